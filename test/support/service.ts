import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { ServeOptions } from '../../server/listen.ts';
import { ROOT } from './workspace.ts';

/** A response body: whatever JSON the test then checks field by field. */
// biome-ignore lint/suspicious/noExplicitAny: tests read answers field by field and check them with expect
export type Json = any;

/** fetch with a bearer token (or none) and a JSON body, answering the status, headers and parsed body. */
export async function call(
  base: string,
  method: string,
  route: string,
  options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: Json; text: string }> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${base}${route}`, { method, headers, body: payload });
  const text = await response.text();
  let body: Json;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, body, text };
}

/** Polls until `check` returns something truthy, or fails after `ms`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms = 60_000, every = 200): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** `caas serve` in a process of its own, as a user starts it; resolves once it printed where it listens. */
export function startServer(
  args: string[],
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/caas.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const url = /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
      if (url) resolve({ child, url, stderr: () => stderr });
    });
    child.on('exit', (code) => reject(new Error(`caas serve exited (${code}) before listening: ${stderr}`)));
  });
}

/**
 * An in-process `caas serve` as the API tests start it: loopback, a free port, inline compute,
 * short leases and polls, no request log; `tokens` and anything else the test sets on top.
 */
export function serviceSettings(home: string): Omit<ServeOptions, 'tokens'> {
  return {
    home,
    storeUrl: 'file:',
    dbUrl: 'sqlite:',
    host: '127.0.0.1',
    port: 0,
    compute: 'inline',
    concurrency: 1,
    leaseMs: 3000,
    statusIntervalMs: 500,
    allowDirty: false,
    maxBodyBytes: 64 * 1024,
    pollMs: 50,
    log: () => {},
  };
}

/** A mock-wait job input over one local data file, as a client posts it. */
export function mockWaitJob(data: string, asset: string, parameters: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    analysis: 'mock-wait',
    inputs: [{ asset_id: asset, name: asset, location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] }],
    parameters: { wait: 0, ...parameters },
    ...extra,
  };
}
