import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { ObjectLocator, openStore } from '../backends/storage/index.ts';
import type { AgentSpec } from '../models/agent-spec.ts';
import type { ManifestEntry } from '../models/record.ts';
import type { StatusFile } from '../models/status.ts';
import { jobKeys } from './bucket-contract.ts';
import { uploadFolder } from './upload.ts';

const STD_LINES = 20;

/**
 * The instance side of a job (NeuroCAAS's run_main.sh). The same code runs in a local child
 * process and on an EC2 instance: stage the config and inputs from the store, run the analysis
 * command with the NeuroCAAS variables, keep the status file and logs current, upload the outputs,
 * and write end.txt last, on failure too. Returns the exit code the job should be judged by.
 */
export async function runAgent(spec: AgentSpec, workDir: string, cancel?: AbortSignal): Promise<number> {
  const store = await openStore(spec.store, { home: workDir, s3Endpoint: spec.s3_endpoint });
  const locator = new ObjectLocator(store, { home: workDir, s3Endpoint: spec.s3_endpoint });
  const keys = jobKeys(spec.bucket, spec.group, spec.timestamp, spec.dataname, spec.configname);
  const put = (key: string, body: string | Uint8Array) => store.put(spec.bucket, key, body);
  const certificate: string[] = [];
  const note = async (line: string) => {
    certificate.push(`${new Date().toISOString()} ${line}`);
    await put(keys.certificate, `${certificate.join('\n')}\n`);
  };
  const recent: string[] = [];
  const status: StatusFile = {
    status: 'INITIALIZING',
    reason: null,
    input: spec.dataname,
    instance: spec.instance,
    command: spec.command.join(' '),
    job_start: new Date().toISOString(),
    job_finish: null,
    cpu_usage: null,
    memory_usage: null,
    std: [],
    exit_code: null,
  };
  const writeStatus = () => put(keys.status, `${JSON.stringify({ ...status, std: recent.slice(-STD_LINES) }, null, 2)}\n`);

  const inputDir = path.join(workDir, 'inputs');
  const configDir = path.join(workDir, 'config');
  const outputDir = path.join(workDir, 'process_results');
  await Promise.all([inputDir, configDir, outputDir].map((dir) => mkdir(dir, { recursive: true })));
  await note(`job manager: job ${keys.resultdir} on ${spec.instance} (${hostname()})`);
  await writeStatus();

  let exitCode: number;
  let reason: string;
  const stdoutFile = path.join(workDir, 'stdout.txt');
  const stderrFile = path.join(workDir, 'stderr.txt');
  const configPath = path.join(configDir, path.posix.basename(spec.configname));
  const staged: string[] = [];
  try {
    await store.getToFile(spec.bucket, keys.config, configPath);
    for (const url of spec.inputs) {
      const { store: source, bucket, key } = await locator.locate(url);
      if (!url.endsWith('/')) {
        const local = path.join(inputDir, uniqueName(path.posix.basename(key), staged));
        await source.getToFile(bucket, key, local);
        await checkInput(url, local, spec.input_checks[url]);
        staged.push(local);
        continue;
      }
      // A folder URL (an asset with no file list): stage everything under it, keeping its layout.
      const folder = path.join(inputDir, uniqueName(path.posix.basename(key.replace(/\/+$/, '')), staged));
      staged.push(folder);
      for await (const object of source.list(bucket, key)) {
        const local = path.resolve(folder, ...object.key.slice(key.length).split('/'));
        if (!local.startsWith(folder + path.sep)) throw new Error(`object ${object.key} would be staged outside the input folder`);
        await source.getToFile(bucket, object.key, local);
      }
    }
    await note(`staged config ${spec.configname} and ${staged.length} input file(s)`);
    const codeProblem = await checkCode(spec);
    if (codeProblem.note) await note(codeProblem.note);
    if (codeProblem.refusal) throw new Error(codeProblem.refusal);
    if (cancel?.aborted) throw new Error(`cancelled: ${String(cancel.reason)}`);
  } catch (error) {
    exitCode = 1;
    reason = `${(error as Error).message.startsWith('cancelled') ? '' : 'staging failed: '}${(error as Error).message}`;
    return finish();
  }

  const env: Record<string, string> = {
    ...inheritedEnv(),
    bucketname: spec.bucket,
    groupdir: spec.group,
    resultdir: keys.resultdir,
    processdir: `${keys.resultdir}/process_results`,
    dataname: spec.dataname,
    inputpath: spec.inputs[0] ?? spec.dataname,
    configname: spec.configname,
    configpath: keys.config,
    CAAS_INPUT_DIR: inputDir,
    CAAS_INPUT: staged[0] ?? inputDir,
    CAAS_CONFIG: configPath,
    CAAS_OUTPUT_DIR: outputDir,
  };
  const argv = spec.command.map((token) => expandPlaceholders(token, spec.analysis_dir));
  status.status = 'IN PROGRESS';
  await writeStatus();
  await note(`running ${argv.map((a) => JSON.stringify(a)).join(' ')}`);

  const started = Date.now();
  const outcome = await new Promise<{ code: number; reason: string }>((resolve) => {
    let child: ChildProcess;
    try {
      // An argv, never a shell line: parameters reach the analysis as files and environment only.
      child = spawn(argv[0]!, argv.slice(1), { cwd: workDir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (error) {
      resolve({ code: 127, reason: `could not start ${argv[0]}: ${(error as Error).message}` });
      return;
    }
    const out = createWriteStream(stdoutFile);
    const err = createWriteStream(stderrFile);
    const remember = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) recent.push(line);
      if (recent.length > 200) recent.splice(0, recent.length - STD_LINES);
    };
    child.stdout?.on('data', remember).pipe(out);
    child.stderr?.on('data', remember).pipe(err);
    let timedOut = false;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {}
    };
    // Politely first, then for certain: the analysis may ignore SIGTERM.
    const stopGroup = () => {
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 5000).unref();
    };
    let cancelled: string | undefined;
    const onCancel = () => {
      cancelled = String(cancel?.reason ?? 'cancelled');
      stopGroup();
    };
    cancel?.addEventListener('abort', onCancel, { once: true });
    const deadline = setTimeout(() => {
      timedOut = true;
      stopGroup();
    }, spec.max_runtime_s * 1000);
    const uploadIfExists = async (file: string, key: string) => {
      if (await stat(file).catch(() => undefined)) await store.putFile(spec.bucket, key, file);
    };
    const ticker = setInterval(() => {
      const usage = child.pid ? processUsage(child.pid) : undefined;
      if (usage) {
        status.cpu_usage = usage.cpu;
        status.memory_usage = usage.memory;
      }
      void Promise.all([writeStatus(), uploadIfExists(stdoutFile, keys.stdout), uploadIfExists(stderrFile, keys.stderr)]).catch(() => {});
    }, spec.status_interval_ms);
    child.on('error', (error) => {
      clearTimeout(deadline);
      clearInterval(ticker);
      resolve({ code: 127, reason: `could not start ${argv[0]}: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      clearInterval(ticker);
      const finished = Promise.all([new Promise((r) => out.end(r)), new Promise((r) => err.end(r))]);
      void finished.then(() => {
        cancel?.removeEventListener('abort', onCancel);
        if (cancelled) resolve({ code: 130, reason: `cancelled: ${cancelled}` });
        else if (timedOut) resolve({ code: 124, reason: `timeout: still running after max runtime of ${spec.max_runtime_s} s` });
        else if (signal) resolve({ code: 128, reason: `killed by ${signal}` });
        else resolve({ code: code ?? 1, reason: `exit code ${code}` });
      });
    });
  });
  exitCode = outcome.code;
  reason = outcome.reason;
  await note(`analysis ended after ${((Date.now() - started) / 1000).toFixed(1)} s: ${reason}`);
  return finish();

  async function finish(): Promise<number> {
    try {
      const manifest: ManifestEntry[] = await uploadFolder(store, spec.bucket, keys.process, outputDir, {
        skip: (rel) => rel === 'end.txt',
      });
      if (await stat(configPath).catch(() => undefined)) {
        const copyKey = spec.config_copy ? keys.process + path.posix.basename(spec.config_copy) : keys.configCopy;
        manifest.push({ key: copyKey, ...(await store.putFile(spec.bucket, copyKey, configPath)) });
      }
      for (const [file, key] of [
        [stdoutFile, keys.stdout],
        [stderrFile, keys.stderr],
      ] as const) {
        await store.put(spec.bucket, key, (await readFile(file).catch(() => Buffer.alloc(0))) as Uint8Array);
      }
      await put(keys.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
      if (exitCode === 0) await note(`uploaded ${manifest.length} result file(s) to ${keys.process}`);
    } catch (error) {
      reason = exitCode === 0 ? `upload failed: ${(error as Error).message}` : `${reason}; upload failed: ${(error as Error).message}`;
      if (exitCode === 0) exitCode = 1;
    }
    status.status = exitCode === 0 ? 'SUCCESS' : 'FAILED';
    status.reason = reason;
    status.exit_code = exitCode;
    status.job_finish = new Date().toISOString();
    await writeStatus();
    await note(`job ${status.status === 'SUCCESS' ? 'succeeded' : `failed (${reason})`}`);
    // end.txt is the last object written: once it exists, everything else of the job is in place.
    await put(keys.end, `${status.status}\n${reason}\nfinished ${status.job_finish}\n`);
    await locator.close();
    await store.close();
    return exitCode;
  }
}

/** An input must still be the file whose etag and size went into the identity. */
async function checkInput(url: string, local: string, expected: { etag?: string; size?: number } | undefined): Promise<void> {
  if (!expected) return;
  const size = (await stat(local)).size;
  if (expected.size !== undefined && size !== expected.size) {
    throw new Error(`input ${url} changed since it was dispatched: ${size} bytes, expected ${expected.size}; dispatch again`);
  }
  // Multipart ETags ("...-N") are not an MD5 of the content; size is all that can be compared then.
  if (expected.etag && !expected.etag.includes('-')) {
    const md5 = createHash('md5');
    await pipeline(createReadStream(local), md5);
    const etag = md5.digest('hex');
    if (etag !== expected.etag.replace(/"/g, ''))
      throw new Error(`input ${url} changed since it was dispatched: etag ${etag}, expected ${expected.etag}; dispatch again`);
  }
}

/**
 * The code that runs must be the code in the identity. Where the analysis folder is a git checkout
 * (local runs, an image built from git) its commit must match, and it must be clean unless the
 * identity itself records a dirty state. Elsewhere the certificate says it was not checked.
 */
async function checkCode(spec: AgentSpec): Promise<{ refusal?: string; note?: string }> {
  if (!spec.code) return {};
  const git = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('git', ['-C', spec.analysis_dir, '--no-optional-locks', ...args], (error, stdout) =>
        error ? reject(error) : resolve(stdout.trim()),
      ),
    );
  // One git call for both questions: the header names the commit, any other line is a change.
  let status: string[];
  try {
    status = (await git('status', '--porcelain=v2', '--branch', '--', '.')).split('\n');
  } catch {
    return { note: `code version not checked: ${spec.analysis_dir} is not a git checkout` };
  }
  const head = status.find((line) => line.startsWith('# branch.oid '))?.slice('# branch.oid '.length) ?? '(no commit)';
  if (head !== spec.code.commit) {
    return {
      refusal: `the analysis code at ${spec.analysis_dir} is at commit ${head}, but the job's identity records ${spec.code.commit}`,
    };
  }
  if (!spec.code.dirty && status.some((line) => line !== '' && !line.startsWith('# '))) {
    return { refusal: `the analysis folder ${spec.analysis_dir} has uncommitted changes that the job's identity does not record` };
  }
  return { note: `code version checked: commit ${head}${spec.code.dirty ? ' (with the recorded uncommitted diff)' : ''}` };
}

const TYPESCRIPT_LOADER = new URL('../analyses/typescript-loader.mjs', import.meta.url).href;

/** Placeholders name caas's own tools and folders, never user data. */
export function expandPlaceholders(token: string, analysisDir: string): string {
  return (
    token
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholders, expanded here on purpose
      .replaceAll('${analysis_dir}', analysisDir)
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholder
      .replaceAll('${node}', process.execPath)
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholder
      .replaceAll('${tsx}', TYPESCRIPT_LOADER)
  );
}

/**
 * The analysis sees PATH, HOME, locale and cloud credentials, not the runner's caas settings; and
 * the host's extra CA certificates, which the local launcher kept from an agent that needed none.
 */
function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !name.startsWith('CAAS_AGENT')) env[name] = value;
  }
  const kept = process.env.CAAS_AGENT_NODE_EXTRA_CA_CERTS;
  if (kept !== undefined && env.NODE_EXTRA_CA_CERTS === undefined) env.NODE_EXTRA_CA_CERTS = kept;
  return env;
}

function uniqueName(name: string, taken: string[]): string {
  const base = name || 'input';
  let candidate = base;
  for (let n = 2; taken.some((t) => path.basename(t) === candidate); n++) candidate = `${n}_${base}`;
  return candidate;
}

/** CPU seconds and resident memory of the analysis process, from /proc (Linux; elsewhere none). */
function processUsage(pid: number): { cpu: string; memory: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return { cpu: `${(ticks / 100).toFixed(2)} s`, memory: rss ? `${(Number(rss) / 1024).toFixed(1)} MiB` : 'unknown' };
  } catch {
    return undefined;
  }
}

export const agentEntry = fileURLToPath(new URL('./agent-main.ts', import.meta.url));
