import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), agentEntry], {
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
