import { type ChildProcess, fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3rver-child.mjs');
const START_TIMEOUT_MS = 20_000;

/** The fake account s3rver accepts, for the AWS SDK or CLI in this or a child process. */
export function s3Env(endpoint: string): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: endpoint,
  };
}

export interface S3rverHandle {
  endpoint: string;
  stop(): Promise<void>;
}

/**
 * Starts s3rver on a free port over a fresh temp folder and points this process's AWS credentials
 * at its fake account (the endpoint is left for callers to pass, so nothing else is redirected by
 * accident). stop() restores the environment, kills the server and removes its folder.
 */
export async function startS3rver(): Promise<S3rverHandle> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'caas-s3rver-'));
  const child = fork(CHILD, [directory], {
    // s3rver's Koa stack uses APIs Node has deprecated; their warnings would only clutter test output.
    execArgv: ['--openssl-legacy-provider', '--no-deprecation'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // A test file that throws before stop() must not leave the server (or its folder) behind.
  const onExit = () => {
    child.kill('SIGKILL');
    rmSync(directory, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  // Nor keep the test process alive on its own; the exit hook above still ends it.
  child.unref();
  child.channel?.unref();

  let port: number;
  try {
    port = await waitForPort(child);
  } catch (error) {
    process.off('exit', onExit);
    await kill(child);
    await rm(directory, { recursive: true, force: true });
    throw error;
  }

  const endpoint = `http://127.0.0.1:${port}`;
  const { AWS_ENDPOINT_URL: _, ...credentials } = s3Env(endpoint);
  const saved = Object.fromEntries(Object.keys(credentials).map((name) => [name, process.env[name]]));
  Object.assign(process.env, credentials);

  return {
    endpoint,
    async stop() {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      process.off('exit', onExit);
      await kill(child);
      await rm(directory, { recursive: true, force: true });
    },
  };
}

function waitForPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`s3rver did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    const onMessage = (message: unknown) => {
      const port = (message as { port?: unknown } | null)?.port;
      if (typeof port === 'number') done(() => resolve(port));
    };
    const onExit = (code: number | null, signal: string | null) =>
      fail(new Error(`s3rver exited before listening (code ${code}, signal ${signal}); its stderr is above`));
    const fail = (error: Error) => done(() => reject(error));
    const done = (settle: () => void) => {
      clearTimeout(timer);
      child.off('message', onMessage).off('exit', onExit).off('error', fail);
      settle();
    };
    child.on('message', onMessage).on('exit', onExit).on('error', fail);
  });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
  await exited;
  clearTimeout(timer);
}
