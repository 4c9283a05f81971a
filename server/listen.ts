import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { CaasError } from '../models/caas-error.ts';
import type { Workspace } from '../wrapper/workspace.ts';
import { buildApp } from './app.ts';
import { QueueWorker } from './queue-worker.ts';
import { isLoopback } from './request-guards.ts';
import { Service } from './service.ts';
import type { TokenRing } from './tokens.ts';

/** The service cannot start as asked (a public --host without tokens, ...): exit 2. */
export class ServeRefused extends CaasError {}

export interface ServeOptions extends Workspace {
  host: string;
  port: number;
  compute: string;
  concurrency: number;
  leaseMs: number;
  statusIntervalMs?: number;
  allowDirty: boolean;
  /** With no tokens, who the jobs run for (--user, CAAS_USER); with tokens, each token's name. */
  user?: string;
  tokens: TokenRing;
  maxBodyBytes: number;
  /** How often an idle worker looks at the queue, and the events stream at a job. */
  pollMs?: number;
  /** One JSON object per request and per job settled (default: a line on stderr). */
  log?: (event: Record<string, unknown>) => void;
}

export interface RunningService {
  url: string;
  port: number;
  app: OpenAPIHono<never>;
  /** Stops accepting, finishes or hands back running jobs within `graceMs`, closes the DB and store. */
  stop(graceMs: number): Promise<{ finished: number; handedBack: number }>;
}

export { isLoopback } from './request-guards.ts';

/**
 * `caas serve`: opens the workspace, starts the queue worker (one more runner on the metadata DB)
 * and the HTTP server. Without tokens it listens on loopback only: anyone who reaches it could run
 * jobs and read every record.
 */
export async function startService(options: ServeOptions): Promise<RunningService> {
  if (options.tokens.empty && !isLoopback(options.host)) {
    throw new ServeRefused(
      `--host ${options.host} would let anyone on the network run jobs and read every record: configure tokens first (caas serve token add --group <group>), or listen on 127.0.0.1`,
    );
  }
  const log = options.log ?? ((event) => process.stderr.write(`${JSON.stringify(event)}\n`));
  const pollMs = options.pollMs ?? 250;
  const service = await Service.open(options);
  let worker: QueueWorker | undefined;
  let draining = false;
  let listening = options.port;
  try {
    worker = await QueueWorker.start(service, { ...options, pollMs }, (event) =>
      log({ time: new Date().toISOString(), worker: true, ...event }),
    );
  } catch (error) {
    await service.close();
    throw error;
  }
  const app = buildApp({
    service,
    worker,
    tokens: options.tokens,
    maxBodyBytes: options.maxBodyBytes,
    eventsIntervalMs: Math.max(200, pollMs * 2),
    log,
    draining: () => draining,
    // Known once the server listens (--port 0 picks one); no request arrives before.
    port: () => listening,
  });
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: options.host, port: options.port }, (info: AddressInfo) =>
      resolve({ server, port: info.port }),
    );
    server.once('error', reject);
  }).catch(async (error) => {
    await worker?.stop(0);
    await service.close();
    throw new ServeRefused(`cannot listen on ${options.host}:${options.port}: ${(error as Error).message}`);
  });
  listening = port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    port,
    app: app as never,
    async stop(graceMs: number) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Open keep-alive connections would hold close() up; requests under way still finish.
      (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      const outcome = (await worker?.stop(graceMs)) ?? { finished: 0, handedBack: 0 };
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closed;
      await service.close();
      return outcome;
    },
  };
}
