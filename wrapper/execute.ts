import { hostname } from 'node:os';
import type { Launcher } from '../backends/compute/index.ts';
import type { MetadataStore } from '../backends/db/index.ts';
import { type ObjectStore, objectUrl } from '../backends/storage/index.ts';
import { AgentSpec } from '../models/agent-spec.ts';
import type { JobLocation, MetadataRecord, Owner } from '../models/record.ts';
import { type JobKeys, jobKeys, parseJobRef } from './bucket-contract.ts';
import { CAAS_VERSION } from './caas-version.ts';
import { sha256Hex } from './identity.ts';
import type { PreparedJob } from './prepare.ts';
import { emptyVerdict, type Verdict, verifyJob } from './verify.ts';

export interface ExecuteContext {
  /** Aborted when the runner is told to stop: running jobs are cancelled and recorded as failed. */
  signal?: AbortSignal;
  db: MetadataStore;
  store: ObjectStore;
  launcher: Launcher;
  owner: Owner;
  leaseMs: number;
  /** Reason for an audited rerun of succeeded identities (--force --reason). */
  force?: string;
  s3Endpoint?: string;
  /** How often the agent rewrites the status file. */
  statusIntervalMs?: number;
}

/**
 * Where a submission's job runs: the user's own job folder and config, named by their submit file,
 * which already exists (the watcher claimed the folder before validating it).
 */
export interface JobPlacement {
  timestamp: string;
  submitExists: true;
  /** The user's config name: the copy of the (validated) config in process_results is named after it. */
  configCopyName?: string;
}

export type JobOutcome = 'succeeded' | 'failed' | 'skipped' | 'running' | 'lost';

export interface JobResult {
  where: string;
  identity: string;
  outcome: JobOutcome;
  reason: string;
  attempt?: number;
  results?: string;
  durationS?: number;
}

/**
 * One job from claim to record: claim the identity (atomic, leased), write the config and submit
 * file under the NeuroCAAS contract, launch the agent, renew the lease while it runs, verify the
 * job folder, then record the outcome. The record says succeeded only after verifyJob said so.
 */
export async function executeJob(job: PreparedJob, ctx: ExecuteContext, placement?: JobPlacement): Promise<JobResult> {
  const started = new Date();
  const timestamp = placement?.timestamp ?? jobTimestamp(started, job.identity);
  const names = jobNames(job);
  const keys = jobKeys(job.bucket, job.group, timestamp, names.dataname, names.configname);
  const location = jobLocation(ctx.store, job, timestamp, keys);
  const base = { where: job.where, identity: job.identity };

  const claim = await ctx.db.claim(job.identity, {
    draft: draftRecord(job, ctx),
    owner: ctx.owner,
    leaseMs: ctx.leaseMs,
    force: ctx.force,
    job: location,
  });
  if (!claim.won) {
    return claim.state === 'succeeded'
      ? { ...base, outcome: 'skipped', reason: 'already succeeded (recorded by another runner meanwhile)' }
      : { ...base, outcome: 'running', reason: 'claimed by another runner meanwhile' };
  }
  const attempt = claim.attempt;
  const heartbeat = startHeartbeat(ctx, job.identity);
  try {
    const recovered = await recoverPreviousAttempt(job, claim.record, ctx);
    if (recovered) return await record(recovered.verdict, recovered.location, 'recovered');

    // The agent stages these validated bytes, never a user's file that could change after validation.
    await ctx.store.put(job.bucket, keys.config, `${JSON.stringify(job.parameters, null, 2)}\n`);
    if (!placement?.submitExists) {
      const submit = `${JSON.stringify({ dataname: names.dataname, configname: names.configname, timestamp }, null, 2)}\n`;
      // Marked before the submit file appears, so a watcher on this bucket leaves the job to us.
      const marker = {
        written_by: 'caas run',
        identity: job.identity,
        submit_key: keys.submit,
        submit_sha256: sha256Hex(submit),
        owner: ctx.owner,
        claimed: started.toISOString(),
        lease_expires: new Date(started.getTime() + 1000 * 60 * (job.analysis.blueprint.max_runtime_minutes + 60)).toISOString(),
      };
      if (
        !(await ctx.store.putIfAbsent(job.bucket, keys.marker, `${JSON.stringify(marker, null, 2)}\n`)) ||
        !(await ctx.store.putIfAbsent(job.bucket, keys.submit, submit))
      ) {
        throw new Error(`job folder ${keys.results} or submit file ${keys.submit} already exists: refusing to reuse a job folder`);
      }
    }
    const maxRuntimeS = job.analysis.blueprint.max_runtime_minutes * 60;
    // Checked here once, for every launcher: an agent of this same build then need not check again.
    const spec = AgentSpec.parse({
      store: ctx.store.url,
      ...(ctx.s3Endpoint ? { s3_endpoint: ctx.s3Endpoint } : {}),
      bucket: job.bucket,
      group: job.group,
      timestamp,
      dataname: names.dataname,
      inputs: names.inputs,
      input_checks: Object.fromEntries(
        job.job.inputs.flatMap((input) =>
          (input.files ?? []).map((f) => [
            f.url,
            { ...(f.etag ? { etag: f.etag } : {}), ...(f.size !== undefined ? { size: f.size } : {}) },
          ]),
        ),
      ),
      code: { commit: job.preimage.code.commit, ...(job.preimage.code.dirty ? { dirty: job.preimage.code.dirty } : {}) },
      configname: names.configname,
      ...(placement?.configCopyName ? { config_copy: placement.configCopyName } : {}),
      command: job.analysis.command,
      analysis_dir: job.analysis.dir,
      instance: `${ctx.launcher.name}@${hostname()}`,
      max_runtime_s: maxRuntimeS,
      status_interval_ms: ctx.statusIntervalMs ?? 2000,
    } satisfies AgentSpec);
    const launched = await ctx.launcher.launch({
      spec,
      identity: job.identity,
      attempt,
      analysis: job.analysis.name,
      group: job.group,
      blueprint: job.analysis.blueprint,
      instanceType: job.job.instance_type ?? job.analysis.blueprint.instance_type,
      deadline: new Date(started.getTime() + maxRuntimeS * 1000),
    });
    heartbeat.onLost(() => void launched.cancel('claim lost: another runner took this job over'));
    const interrupt = () => void launched.cancel(`runner interrupted (${String(ctx.signal?.reason ?? 'stop')})`);
    if (ctx.signal?.aborted) interrupt();
    ctx.signal?.addEventListener('abort', interrupt, { once: true });
    // The wrapper's own deadline, a minute after the agent's, catches machines that never report.
    const deadline = setTimeout(() => void launched.cancel(`timeout: past max runtime of ${maxRuntimeS} s`), (maxRuntimeS + 60) * 1000);
    const ended = await launched.ended.finally(() => {
      clearTimeout(deadline);
      ctx.signal?.removeEventListener('abort', interrupt);
    });
    const verdict = await verifyJob(ctx.store, job.bucket, keys, job.analysis);
    if (!verdict.ended) verdict.reason = ended.reason ?? 'instance lost: the machine ended without writing end.txt';
    else if (!verdict.succeeded && ended.reason) verdict.reason = `${ended.reason}; ${verdict.reason}`;
    return await record(verdict, location, launched.instance);
  } catch (error) {
    const reason = `caas could not run the job: ${(error as Error).message}`;
    return await record({ ...emptyVerdict(), reason }, location, null);
  } finally {
    heartbeat.stop();
  }

  async function record(verdict: Verdict, where: JobLocation, instance: string | null): Promise<JobResult> {
    const ended = new Date();
    const status = verdict.succeeded ? 'succeeded' : 'failed';
    const start = verdict.start ?? started.toISOString();
    const end = verdict.end ?? ended.toISOString();
    // Fault injection for the crash-recovery tests: die exactly between the upload and the record.
    if (process.env.CAAS_FAULT === 'kill-before-record') process.kill(process.pid, 'SIGKILL');
    const written = await ctx.db.finish(
      job.identity,
      ctx.owner,
      (current): MetadataRecord => ({
        ...current,
        status,
        job: where,
        outputs: verdict.succeeded ? { manifest: verdict.manifest, output_parameters: verdict.outputParameters } : null,
        compute: {
          backend: ctx.launcher.name,
          host: hostname(),
          instance,
          type: job.job.instance_type ?? job.analysis.blueprint.instance_type,
        },
        exit_code: verdict.exitCode,
        reason: verdict.reason,
        stderr_tail: verdict.stderrTail,
        start,
        end,
        duration_s: (Date.parse(end) - Date.parse(start)) / 1000,
        attempts: current.attempts.map((a) =>
          a.n === attempt
            ? { ...a, status, ended: ended.toISOString(), reason: verdict.reason, exit_code: verdict.exitCode, results: where.results }
            : a,
        ),
      }),
    );
    if (!written) return { ...base, attempt, outcome: 'lost', reason: 'another runner took over this job before its record was written' };
    return {
      ...base,
      attempt,
      outcome: status,
      reason: verdict.reason,
      results: where.results,
      durationS: (ended.getTime() - started.getTime()) / 1000,
    };
  }
}

/**
 * A runner that died after the agent finished leaves a complete job folder and an expired lease.
 * Its successor verifies that folder and records it instead of computing the job again.
 */
async function recoverPreviousAttempt(
  job: PreparedJob,
  claimed: MetadataRecord,
  ctx: ExecuteContext,
): Promise<{ verdict: Verdict; location: JobLocation } | undefined> {
  const previous = claimed.attempts.at(-2);
  if (!previous?.results || !previous.reason?.startsWith('lease expired') || ctx.force) return undefined;
  const timestamp = parseJobRef(previous.results)?.timestamp;
  if (!timestamp) return undefined;
  const names = jobNames(job);
  const keys = jobKeys(job.bucket, job.group, timestamp, names.dataname, names.configname);
  const verdict = await verifyJob(ctx.store, job.bucket, keys, job.analysis);
  if (!verdict.succeeded) return undefined;
  verdict.reason = `recovered: attempt ${previous.n} finished but its runner died before recording; outputs verified`;
  return { verdict, location: jobLocation(ctx.store, job, timestamp, keys) };
}

/** Unique per attempt (time to the millisecond plus the identity), so no job folder is ever reused. */
export function jobTimestamp(at: Date, identity: string): string {
  return `${at.toISOString().replace(/[-:]/g, '').replace('.', '')}-${identity.slice(0, 8)}`;
}

/** What the submit file names: the data (one file, or the asset folder) and the config. */
export function jobNames(job: PreparedJob): { dataname: string; configname: string; inputs: string[] } {
  const files = job.job.inputs.flatMap(
    (input) => input.files?.map((f) => f.url) ?? [input.location.endsWith('/') ? input.location : `${input.location}/`],
  );
  return {
    dataname: files.length === 1 ? files[0]! : job.job.inputs[0]!.location,
    configname: `caas-${job.identity.slice(0, 16)}.json`,
    inputs: files,
  };
}

function jobLocation(store: ObjectStore, job: PreparedJob, timestamp: string, keys: JobKeys): JobLocation {
  return {
    store: store.scheme,
    bucket: job.bucket,
    group: job.group,
    timestamp,
    results: objectUrl(store.scheme, job.bucket, keys.process),
    logs: objectUrl(store.scheme, job.bucket, keys.logs),
  };
}

function draftRecord(job: PreparedJob, ctx: ExecuteContext): MetadataRecord {
  const now = new Date().toISOString();
  return {
    _id: job.identity,
    status: 'claimed',
    preimage: job.preimage,
    analysis: job.preimage.analysis,
    code: job.preimage.code,
    parameters: job.parameters,
    inputs: job.job.inputs,
    query: job.job.provenance ?? null,
    job: null,
    outputs: null,
    compute: {
      backend: ctx.launcher.name,
      host: hostname(),
      instance: null,
      type: job.job.instance_type ?? job.analysis.blueprint.instance_type,
    },
    exit_code: null,
    reason: null,
    stderr_tail: [],
    start: null,
    end: null,
    duration_s: null,
    attempts: [],
    lease: null,
    created: now,
    updated: now,
    caas_version: CAAS_VERSION,
  };
}

/** Renews the lease at a third of its length; tells the caller when the claim is gone. */
function startHeartbeat(ctx: ExecuteContext, identity: string) {
  let lostHandler: (() => void) | undefined;
  let lost = false;
  const timer = setInterval(
    () => {
      void ctx.db.renew(identity, ctx.owner, ctx.leaseMs).then(
        (held) => {
          if (!held && !lost) {
            lost = true;
            lostHandler?.();
          }
        },
        () => {},
      );
    },
    Math.max(50, Math.floor(ctx.leaseMs / 3)),
  );
  return {
    onLost(handler: () => void) {
      lostHandler = handler;
      // The loss may have been seen already, e.g. while the launch waited for a deploy_limit slot.
      if (lost) handler();
    },
    stop() {
      clearInterval(timer);
    },
  };
}
