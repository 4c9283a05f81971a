import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadAnalysis } from '../analyses/index.ts';
import type { ObjectStore } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { type DevJobDone, type DevJobTaken, devJobKeysOf, devJobsPrefix } from '../models/dev-instance.ts';
import { isPlainObject } from '../models/plain-object.ts';
import { AGENT_PROGRAM } from './agent-program.ts';

export interface DevJobLoopOptions {
  store: ObjectStore;
  /** The analysis bucket: a spec for another bucket is not run. */
  bucket: string;
  /** This instance's id: its jobs are under .caas/dev/{instance}/. */
  instance: string;
  /** caas on this instance (CAAS_ROOT): the analyses it runs are in its analyses/ folder, as on a job instance. */
  caasRoot: string;
  log: (line: string) => void;
  /** Runs the agent on a spec file in a work folder; resolves to its exit code. */
  runAgent?: (specFile: string, workDir: string) => Promise<number | null>;
}

/**
 * The instance side of `caas dev test`: takes each job left for this instance (put-if-absent on
 * its `.taken`, so a job is run once, and never after `caas dev test` withdrew it), runs caas's
 * agent on it exactly as a job instance's UserData does, and writes `.done` when the agent exits.
 * One job at a time: a development instance is one machine for one developer.
 */
export class DevJobLoop {
  private readonly runAgent: (specFile: string, workDir: string) => Promise<number | null>;

  constructor(private readonly options: DevJobLoopOptions) {
    this.runAgent = options.runAgent ?? startAgent;
  }

  /** Every job waiting now, one after the other; resolves to how many ran. */
  async pollOnce(): Promise<number> {
    const { store, bucket, instance } = this.options;
    const keys = new Set<string>();
    for await (const info of store.list(bucket, devJobsPrefix(instance))) keys.add(info.key);
    let ran = 0;
    for (const key of [...keys].filter((k) => k.endsWith('.json')).sort()) {
      const job = devJobKeysOf(key);
      if (keys.has(job.taken)) continue;
      const taken: DevJobTaken = { by: 'instance', at: new Date().toISOString(), note: `${hostname()} pid ${process.pid}` };
      if (!(await store.putIfAbsent(bucket, job.taken, `${JSON.stringify(taken)}\n`))) continue;
      const exitCode = await this.runJob(key);
      const done: DevJobDone = { exit_code: exitCode, at: new Date().toISOString() };
      await store.put(bucket, job.done, `${JSON.stringify(done)}\n`);
      ran++;
    }
    return ran;
  }

  /** Polls every `intervalMs` until the signal aborts; a failed look is logged and tried again. */
  async run(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.pollOnce();
      } catch (error) {
        this.options.log(`caas dev: looking for test jobs failed (trying again): ${(error as Error).message}`);
      }
      await sleep(intervalMs, undefined, { signal }).catch(() => {});
    }
  }

  /** One job: its spec with the analysis folder as this instance holds it, and the agent on it, in a fresh folder. */
  private async runJob(key: string): Promise<number | null> {
    const { store, bucket, caasRoot, log } = this.options;
    const workDir = await mkdtemp(path.join(tmpdir(), 'caas-dev-job-'));
    try {
      let spec: unknown;
      try {
        spec = JSON.parse((await store.get(bucket, key)).toString('utf8'));
      } catch (error) {
        log(`caas dev: ${key} is not a readable spec (${(error as Error).message}): not run`);
        return null;
      }
      if (!isPlainObject(spec) || spec.bucket !== bucket) {
        log(`caas dev: ${key} is not a job spec for bucket ${bucket}: not run`);
        return null;
      }
      // The spec names the folder on the developer's machine; here the analysis is where a job instance has it.
      const name = path.posix.basename(String(spec.analysis_dir ?? ''));
      let analysis: Analysis;
      try {
        analysis = await loadAnalysis(name, [path.join(caasRoot, 'analyses')]);
      } catch (error) {
        log(`caas dev: ${key}: analysis ${JSON.stringify(name)} cannot be loaded on this instance (${(error as Error).message}): not run`);
        return null;
      }
      // What runs, and with what environment, comes from the analysis on this instance, never from the
      // spec: whoever can write under .caas/dev/ (any job's instance role can) would otherwise run anything here.
      const specFile = path.join(workDir, 'spec.json');
      const trusted = {
        analysis_dir: analysis.dir,
        command: analysis.command,
        environment: analysis.blueprint.environment,
        store: store.url,
      };
      await writeFile(specFile, JSON.stringify({ ...spec, ...trusted }));
      log(`caas dev: running ${key} (analysis folder ${analysis.dir})`);
      const jobDir = path.join(workDir, 'job');
      const exitCode = await this.runAgent(specFile, jobDir);
      log(`caas dev: ${key}: the agent exited with code ${exitCode}`);
      return exitCode;
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }
}

/** `node --import tsx wrapper/agent-main.ts` on the spec file, as a job instance's UserData starts it (this process's loader included). */
async function startAgent(specFile: string, workDir: string): Promise<number | null> {
  await mkdir(workDir, { recursive: true });
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, AGENT_PROGRAM.entry], {
      cwd: workDir,
      env: { ...process.env, CAAS_AGENT_SPEC_FILE: specFile },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
}
