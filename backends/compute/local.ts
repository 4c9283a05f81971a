import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { agentEntry } from '../../wrapper/agent.ts';
import type { LaunchedJob, Launcher, LaunchRequest, MachineEnd } from './index.ts';

/**
 * One fresh child process per job, in a fresh temporary folder that is removed afterwards: nothing
 * is shared between jobs, as with one instance per job in the cloud.
 */
export class LocalLauncher implements Launcher {
  readonly name = 'local';

  async launch(request: LaunchRequest): Promise<LaunchedJob> {
    const workDir = await mkdtemp(path.join(tmpdir(), 'caas-job-'));
    const child = spawn(process.execPath, await agentArgs(), {
      cwd: workDir,
      env: { ...process.env, CAAS_AGENT_SPEC: JSON.stringify(request.spec) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    });
    let cancelled: string | undefined;
    const ended = new Promise<MachineEnd>((resolve) => {
      child.on('error', (error) => resolve({ exitCode: null, reason: `agent could not start: ${error.message}` }));
      child.on('close', (code, signal) => {
        void rm(workDir, { recursive: true, force: true }).finally(() => {
          if (cancelled) resolve({ exitCode: code, reason: cancelled });
          else if (signal) resolve({ exitCode: null, reason: `agent killed by ${signal}` });
          else if (code === 70) resolve({ exitCode: code, reason: `agent crashed: ${stderr.trim().split('\n').slice(-3).join(' | ')}` });
          else resolve({ exitCode: code });
        });
      });
    });
    return {
      instance: `local:${child.pid ?? 'unknown'}`,
      ended,
      cancel: async (reason: string) => {
        cancelled = reason;
        child.kill('SIGTERM');
      },
    };
  }

  async close(): Promise<void> {}
}

const CACHE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../node_modules/.cache/caas');
let agentArgsOnce: Promise<string[]> | undefined;

/**
 * How to start the agent. Through tsx it takes ~0.9 s of CPU to start, which dominates short jobs
 * by the hundred; so each runner bundles the agent once with esbuild (~0.1 s), from the sources as
 * they are now, into a content-addressed file, and falls back to tsx if that fails.
 */
function agentArgs(): Promise<string[]> {
  agentArgsOnce ??= (async () => {
    try {
      const { build } = await import('esbuild');
      const result = await build({
        entryPoints: [agentEntry],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        write: false,
        logLevel: 'silent',
        // The agent finds caas files (the TypeScript loader) relative to its own source, not the bundle.
        define: { 'import.meta.url': JSON.stringify(pathToFileURL(agentEntry).href) },
      });
      const code = result.outputFiles[0]!.contents;
      const file = path.join(CACHE, `agent-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`);
      if (!existsSync(file)) {
        await mkdir(CACHE, { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, code);
        await rename(tmp, file);
      }
      return [file];
    } catch {
      return ['--import', import.meta.resolve('tsx'), agentEntry];
    }
  })();
  return agentArgsOnce;
}
