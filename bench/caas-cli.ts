import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface CliRun {
  wallS: number;
  stderr: string;
}

/**
 * Runs the real `caas` CLI in its own process and times it, start-up included. With `probe`, the
 * process writes its own peak RSS and CPU time to that file as it exits (bench/rss-probe.mjs).
 * A non-zero exit rejects with the end of its stderr.
 */
export function runCaas(args: string[], options: { env?: NodeJS.ProcessEnv; probe?: string } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const preload = options.probe ? ['--import', path.join(ROOT, 'bench/rss-probe.mjs')] : [];
    const started = performance.now();
    const child = spawn(process.execPath, [...preload, path.join(ROOT, 'bin/caas.js'), ...args], {
      cwd: ROOT,
      env: { ...(options.env ?? process.env), ...(options.probe ? { CAAS_BENCH_PROBE: options.probe } : {}) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`caas ${args.join(' ')} exited ${code}: ${stderr.trim().slice(-2000)}`));
      else resolve({ wallS: (performance.now() - started) / 1000, stderr });
    });
  });
}
