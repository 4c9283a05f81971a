import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LaunchedJob, Launcher } from '../backends/compute/index.ts';
import { type ClaimOutcome, type MetadataStore, sameOwner } from '../backends/db/index.ts';
import { type ObjectStore, objectUrl, type StoreSettings, settingsWithUrl } from '../backends/storage/index.ts';
import { AgentSpec } from '../models/agent-spec.ts';
import { type JobKeys, jobKeys, parseJobRef } from '../models/bucket-contract.ts';
import type { JobDocument } from '../models/job-document.ts';
import type { Attempt, AttemptCost, JobLocation, MetadataRecord, Owner, Submitter } from '../models/record.ts';
import type { Heartbeat } from '../models/status.ts';
import { aindProcessingOf } from './aind-processing.ts';
import { adoptAttempt, chargeDeadAttempt, lapsedAttempt, replaceDeadAttempt, startAttempt } from './attempts.ts';
import { CAAS_VERSION } from './caas-version.ts';
import { attemptCost, enterGroup, type HoldMachine, type SlotOutcome } from './group-budget.ts';
import { sha256Hex } from './identity.ts';
import { type EarlierAttempt, followAttempt, lookAtLapsedAttempt, readHeartbeat } from './liveness.ts';
import { folderUrl, type PreparedJob } from './prepare.ts';
import { emptyVerification, type Verification, verifyJob } from './verify.ts';

/** What a runner that stalled reports when another runner adopted its job. */
const ADOPTED_ELSEWHERE = 'this runner stopped renewing its lease in time and another runner adopted the job; that runner records it';

/** setTimeout's longest delay (about 24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long a machine may take from its launch to its agent's start (boot, image pull): its hard stop counts from there. */
const MACHINE_BOOT_S = 10 * 60;

/** How often an agent rewrites its status file (its heartbeat) unless told otherwise. */
export const DEFAULT_STATUS_INTERVAL_MS = 2000;
/** A lease shorter than this many heartbeats could lapse while the agent is still alive and quiet. */
export const LEASE_HEARTBEATS = 3;

/**
 * Why a lease is too short to trust, if it is: adoption needs the heartbeat of a live agent to be
 * fresh whenever its runner's lease is seen lapsed, so a lease spans a few heartbeats at least.
 */
export function leaseProblem(leaseMs: number, statusIntervalMs = DEFAULT_STATUS_INTERVAL_MS): string | undefined {
  const floor = LEASE_HEARTBEATS * statusIntervalMs;
  if (Number.isFinite(leaseMs) && leaseMs >= floor) return undefined;
  return `a lease of ${leaseMs / 1000} s is too short: it must span at least ${LEASE_HEARTBEATS} status intervals (${floor / 1000} s), or a live job could be taken for a dead one`;
}

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
  /** The store kinds' settings, for the agent's stores other than ctx.store (whose URL carries its own). */
  storeSettings?: StoreSettings;
  /** How often the agent rewrites the status file (its heartbeat). */
  statusIntervalMs?: number;
  /** When this runner planned: failures other runners record after it are left to the next run. */
  plannedAt?: Date;
  /** Who the jobs run for, where that is known: kept with each attempt. */
  submitter?: Submitter;
  /** How long a job waits for a slot of its group's instance_limit before it is refused (default: its max runtime). */
  slotWaitMs?: number;
  /** Progress notes, such as a job waiting for a slot (default stderr). */
  note?: (line: string) => void;
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

/** `refused`: not started, because of its group's budget or instance_limit (the reason says which). */
export type JobOutcome = 'succeeded' | 'failed' | 'skipped' | 'running' | 'failed-elsewhere' | 'lost' | 'refused';

export interface JobResult {
  where: string;
  identity: string;
  outcome: JobOutcome;
  reason: string;
  attempt?: number;
  results?: string;
  durationS?: number;
  /** A machine of the job may run on unrecorded, which no other runner holds: its group's slot is kept until its machine hold passes. */
  unsettled?: true;
}

/** One job folder: its timestamp, its keys, and where the record says it is. */
interface Place {
  timestamp: string;
  keys: JobKeys;
  location: JobLocation;
}

/**
 * One job, let into its group first (budget, instance_limit: wrapper/group-budget.ts), which it
 * holds a slot of until it is recorded; then claimed, run and recorded by claimAndRun. A job that
 * ends unsettled (or a throw: its record may not be written) keeps the slot for its machine.
 */
export async function executeJob(job: PreparedJob, ctx: ExecuteContext, placement?: JobPlacement): Promise<JobResult> {
  const admission = await enterGroup(job, ctx);
  if (!admission.admitted) return { where: job.where, identity: job.identity, outcome: 'refused', reason: admission.reason };
  let settled: SlotOutcome = 'unsettled';
  try {
    const result = await claimAndRun(job, ctx, placement, admission.holdMachine);
    settled = result.unsettled ? 'unsettled' : 'recorded';
    return result;
  } finally {
    await admission.leave(settled);
  }
}

/**
 * One job from claim to record: claim the identity (atomic, leased); if the claim took over a job
 * whose runner died, adopt its attempt when its agent is still alive (or record it when it already
 * finished); otherwise write the config and submit file under the NeuroCAAS contract, launch the
 * agent, renew the lease while it runs, verify the job folder, then record the outcome. The record
 * says succeeded only after verifyJob said so.
 */
async function claimAndRun(
  job: PreparedJob,
  ctx: ExecuteContext,
  placement: JobPlacement | undefined,
  holdMachine: HoldMachine,
): Promise<JobResult> {
  const started = new Date();
  const place = placeOf(job, ctx.store, placement?.timestamp ?? jobTimestamp(started, job.identity));
  const base = { where: job.where, identity: job.identity };

  const claim = await ctx.db.claim(job.identity, {
    draft: draftRecord(job, ctx),
    owner: ctx.owner,
    leaseMs: ctx.leaseMs,
    force: ctx.force,
    job: place.location,
    plannedAt: ctx.plannedAt,
    submitter: ctx.submitter,
  });
  if (!claim.won) return { ...base, ...claimedElsewhere(claim) };
  const lease = startLeaseRenewal(ctx, job.identity);
  const recorder = new Recorder(job, ctx, started, claim.attempt);
  let attempt = claim.attempt;
  try {
    const earlier = await settleEarlierAttempt(job, ctx, recorder, lease, claim, place);
    if (earlier.done) return earlier.done;
    attempt = earlier.attempt;
    if (ctx.signal?.aborted) {
      return await recorder.record(
        { ...emptyVerification(), reason: `cancelled before launch: ${String(ctx.signal.reason)}` },
        place.location,
        null,
        attempt,
      );
    }
    return await superviseAttempt(job, ctx, { place, attempt, started, placement, lease, recorder, holdMachine });
  } catch (error) {
    const reason = `caas could not run the job: ${(error as Error).message}`;
    return await recorder.record({ ...emptyVerification(), reason }, place.location, null, attempt);
  } finally {
    lease.stop();
  }
}

/** What a runner that lost the claim reports: the job is done, failed in this wave, or running elsewhere. */
function claimedElsewhere(claim: Extract<ClaimOutcome, { won: false }>): Omit<JobResult, 'where' | 'identity'> {
  if (claim.state === 'succeeded') return { outcome: 'skipped', reason: 'already succeeded (recorded by another runner meanwhile)' };
  if (claim.state === 'failed') {
    const last = claim.record.attempts.at(-1);
    return {
      outcome: 'failed-elsewhere',
      reason: `failed just now in another runner (attempt ${last?.n ?? '?'}: ${claim.record.reason ?? 'unknown'}); the next run retries it`,
      results: claim.record.job?.results,
    };
  }
  return { outcome: 'running', reason: 'claimed by another runner meanwhile' };
}

/**
 * A claim that took over a lapsed lease first deals with the earlier attempt: adopt it while its
 * agent lives, record it if it finished, or start this attempt once it is known to be dead. A
 * plain claim (no earlier attempt) just runs.
 */
async function settleEarlierAttempt(
  job: PreparedJob,
  ctx: ExecuteContext,
  recorder: Recorder,
  lease: LeaseRenewal,
  claim: Extract<ClaimOutcome, { won: true }>,
  fresh: Place,
): Promise<Takeover> {
  const base = { where: job.where, identity: job.identity };
  const lapsed = lapsedAttempt(claim.record, claim.attempt);
  const earlierTimestamp = lapsed?.results ? parseJobRef(lapsed.results)?.timestamp : undefined;
  if (!(lapsed && earlierTimestamp)) {
    // A lapsed attempt with no job folder to look at: nothing to adopt, this attempt runs.
    if (
      claim.record.attempts.at(-1)?.status === 'claimed' &&
      !(await ctx.db.update(job.identity, ctx.owner, (r) => startAttempt(r, claim.attempt)))
    ) {
      return { done: { ...base, outcome: 'lost', reason: 'another runner took over this job meanwhile' } };
    }
    return { attempt: claim.attempt };
  }
  try {
    return await takeOver(job, ctx, recorder, lease, lapsed, placeOf(job, ctx.store, earlierTimestamp), fresh, claim.attempt);
  } catch (error) {
    // The earlier attempt's agent may be at work: nothing is recorded, the lease lapses, and the next run looks again.
    return {
      done: {
        ...base,
        outcome: 'lost',
        reason: `could not look at attempt ${lapsed.n} (${(error as Error).message}); the next run takes the job over`,
        unsettled: true,
      },
    };
  }
}

/**
 * Launches the attempt and waits for whichever comes first: the machine's end, a lost claim, the
 * runner being stopped, or the wrapper's own deadline; then verifies the job folder and records.
 */
async function superviseAttempt(
  job: PreparedJob,
  ctx: ExecuteContext,
  run: {
    place: Place;
    attempt: number;
    started: Date;
    placement?: JobPlacement;
    lease: LeaseRenewal;
    recorder: Recorder;
    holdMachine: HoldMachine;
  },
): Promise<JobResult> {
  const { place, attempt, lease, recorder } = run;
  const maxRuntimeS = job.analysis.blueprint.max_runtime_minutes * 60;
  // The group's slot is held until the machine must be gone, so a runner that dies from here on
  // does not free a place while its machine still runs. Before the launch that is two max runtimes
  // away (a launcher may first wait up to one for its deploy_limit); once launched, and again once
  // started (a queued Batch job), one max runtime and the machine's boot from then. A machine that
  // dies with its runner (inline) needs no hold.
  const hold = ctx.launcher.outlivesRunner === false ? async () => {} : run.holdMachine;
  const machineGone = () => new Date(Date.now() + (maxRuntimeS + MACHINE_BOOT_S) * 1000);
  await hold(new Date(Date.now() + (2 * maxRuntimeS + MACHINE_BOOT_S) * 1000));
  const launched = await launchAttempt(job, ctx, place, attempt, run.started, run.placement);
  await hold(machineGone());
  launched.running?.then(
    () => hold(machineGone()),
    () => {},
  );
  const lost = lease.lost.then(() => claimLost(ctx, job.identity, attempt));
  const interrupt = () => void launched.cancel(`runner interrupted (${String(ctx.signal?.reason ?? 'stop')})`);
  if (ctx.signal?.aborted) interrupt();
  ctx.signal?.addEventListener('abort', interrupt, { once: true });
  // The wrapper's own deadline, a minute after the agent's, catches machines that never report. It
  // runs from the machine's start: time in a queue (AWS Batch) is not the analysis' runtime.
  let deadline: NodeJS.Timeout | undefined;
  let done = false;
  const arm = () => {
    if (done) return;
    const ms = Math.min((maxRuntimeS + 60) * 1000, MAX_TIMER_MS);
    deadline = setTimeout(() => void launched.cancel(`timeout: past max runtime of ${maxRuntimeS} s`), ms);
  };
  if (launched.running) launched.running.then(arm, arm);
  else arm();
  const ended = await Promise.race([launched.ended, lost]).finally(() => {
    done = true;
    clearTimeout(deadline);
    ctx.signal?.removeEventListener('abort', interrupt);
  });
  if (ended === 'adopted') return { where: job.where, identity: job.identity, attempt, outcome: 'running', reason: ADOPTED_ELSEWHERE };
  if (ended === 'taken') void launched.cancel('claim lost: another runner took this job over');
  const machineEnd = ended === 'taken' ? await launched.ended : ended;
  const verdict = await verifyJob(ctx.store, job.bucket, place.keys, job.analysis);
  if (!verdict.ended) verdict.reason = machineEnd.reason ?? 'instance lost: the machine ended without writing end.txt';
  else if (!verdict.succeeded && machineEnd.reason) verdict.reason = `${machineEnd.reason}; ${verdict.reason}`;
  return await recorder.record(verdict, place.location, launched.instance, attempt);
}

/** What a takeover decided: the job is answered, or this attempt number runs now (in the fresh folder). */
type Takeover = { done: JobResult; attempt?: undefined } | { done?: undefined; attempt: number };

/**
 * This runner's claim replaced a runner that stopped renewing its lease. Its attempt is looked at
 * before anything starts: finished (end.txt) is recorded as it is; alive (a fresh heartbeat, or a
 * machine that is up or cannot be asked about) is adopted and followed to its end; only a dead one
 * makes way for a new attempt, the claim's own.
 */
async function takeOver(
  job: PreparedJob,
  ctx: ExecuteContext,
  recorder: Recorder,
  lease: LeaseRenewal,
  lapsed: Attempt,
  earlier: Place,
  fresh: Place,
  claimed: number,
): Promise<Takeover> {
  const base = { where: job.where, identity: job.identity };
  const taken = (): Takeover => ({ done: { ...base, outcome: 'lost', reason: 'another runner took over this job meanwhile' } });
  const subject: EarlierAttempt = {
    store: ctx.store,
    bucket: job.bucket,
    keys: earlier.keys,
    identity: job.identity,
    attempt: lapsed.n,
    blueprint: job.analysis.blueprint,
    launcher: ctx.launcher,
  };
  const liveness = await lookAtLapsedAttempt(subject);
  if (liveness.state === 'ended') {
    const verdict = await verifyJob(ctx.store, job.bucket, earlier.keys, job.analysis);
    verdict.reason = `recovered: attempt ${lapsed.n} finished but its runner died before recording; ${verdict.succeeded ? 'outputs verified' : verdict.reason}`;
    return { done: await recorder.record(verdict, earlier.location, null, lapsed.n) };
  }
  if (liveness.state === 'dead') {
    // Decided: the claim's attempt runs. Until now it was `claimed`, so a waking runner waited.
    const charged = (r: MetadataRecord) => chargeDeadAttempt(r, lapsed.n, deadAttemptCost(job, lapsed, liveness.heartbeat));
    if (!(await ctx.db.update(job.identity, ctx.owner, (r) => startAttempt(charged(r), claimed)))) return taken();
    return { attempt: claimed };
  }

  if (!(await ctx.db.update(job.identity, ctx.owner, (r) => adoptAttempt(r, lapsed.n, claimed, ctx.owner, earlier.location)))) {
    return taken();
  }
  const adopted = `adopted by ${ctx.owner.host} pid ${ctx.owner.pid}: its runner had stopped renewing its lease while ${liveness.why}`;
  const deadline = Date.parse(lapsed.started) + (job.analysis.blueprint.max_runtime_minutes * 60 + 120) * 1000;
  let { followed, leaseLost } = await followAdopted(subject, deadline, ctx.signal, lease);
  if (followed.state === 'stopped' && leaseLost) return taken();
  if (followed.state === 'stopped' || followed.state === 'deadline') {
    const why =
      followed.state === 'stopped'
        ? `runner interrupted (${String(ctx.signal?.reason ?? 'stop')})`
        : 'past its max runtime, still not finished';
    const { heartbeat } = await readHeartbeat(ctx.store, job.bucket, earlier.keys).catch(() => ({ heartbeat: liveness.heartbeat }));
    const machine = { identity: job.identity, attempt: lapsed.n, blueprint: job.analysis.blueprint, heartbeat };
    if (!(await ctx.launcher.stopMachine?.(machine, why).catch(() => false))) {
      // Not a machine this runner can reach: it goes on, unrecorded; the next run adopts it again.
      const where = heartbeat?.instance ?? liveness.heartbeat?.instance ?? 'unknown machine';
      return {
        done: {
          ...base,
          attempt: lapsed.n,
          outcome: 'running',
          reason: `left running (${why}): this runner cannot stop the adopted agent on ${where}; the next run adopts it again`,
          unsettled: true,
        },
      };
    }
    followed = await followAttempt(subject, { deadline: Date.now() + 60_000 });
    if (followed.state !== 'ended') {
      const verdict = { ...emptyVerification(), reason: `${why}: its machine was told to stop, but it wrote no end.txt; ${adopted}` };
      return { done: await recorder.record(verdict, earlier.location, heartbeat?.instance ?? null, lapsed.n) };
    }
  }
  if (followed.state === 'ended') {
    const verdict = await verifyJob(ctx.store, job.bucket, earlier.keys, job.analysis);
    verdict.reason = `${verdict.reason}; ${adopted}`;
    return { done: await recorder.record(verdict, earlier.location, liveness.heartbeat?.instance ?? null, lapsed.n) };
  }
  // The adopted agent died too: its attempt is closed and a new one starts here.
  const why = `adopted, then its agent stopped: ${followed.state === 'dead' ? followed.why : followed.state}`;
  const lastBeat = (followed.state === 'dead' ? followed.heartbeat : undefined) ?? liveness.heartbeat;
  const charged = (r: MetadataRecord) => chargeDeadAttempt(r, lapsed.n, deadAttemptCost(job, lapsed, lastBeat));
  if (!(await ctx.db.update(job.identity, ctx.owner, (r) => replaceDeadAttempt(charged(r), lapsed.n, why, ctx.owner, fresh.location))))
    return taken();
  return { attempt: lapsed.n + 1 };
}

/**
 * What a dead, unrecorded attempt is charged: its instance from its start until its agent's last
 * heartbeat (and one interval, when it may have died), at most its max runtime and boot. An agent
 * that never wrote a heartbeat may never have started: nothing is charged, as nothing is known.
 */
function deadAttemptCost(job: PreparedJob, dead: Attempt, heartbeat: Heartbeat | undefined): AttemptCost {
  const { blueprint } = job.analysis;
  const longest = Date.parse(dead.started) + (blueprint.max_runtime_minutes * 60 + MACHINE_BOOT_S) * 1000;
  const last = heartbeat ? Date.parse(heartbeat.at) + heartbeat.interval_ms : Date.parse(dead.started);
  const until = new Date(Math.max(Date.parse(dead.started), Math.min(Date.now(), longest, last || 0))).toISOString();
  return attemptCost(blueprint, job.input.instance_type ?? blueprint.instance_type, dead.started, until);
}

/** Follows an adopted attempt until it ends, or until this runner is told to stop or loses the job in turn. */
async function followAdopted(
  subject: EarlierAttempt,
  deadline: number,
  signal: AbortSignal | undefined,
  lease: LeaseRenewal,
): Promise<{ followed: Awaited<ReturnType<typeof followAttempt>>; leaseLost: boolean }> {
  const following = new AbortController();
  const onAbort = () => following.abort('interrupted');
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  let leaseLost = false;
  void lease.lost.then(() => {
    leaseLost = true;
    following.abort('lease lost');
  });
  const followed = await followAttempt(subject, { deadline, signal: following.signal }).finally(() =>
    signal?.removeEventListener('abort', onAbort),
  );
  return { followed, leaseLost };
}

/** Writes the config and the submit file of a new attempt and starts its machine. */
async function launchAttempt(
  job: PreparedJob,
  ctx: ExecuteContext,
  place: Place,
  attempt: number,
  started: Date,
  placement?: JobPlacement,
): Promise<LaunchedJob> {
  const { keys, timestamp } = place;
  const names = jobNames(job);
  if (placement) {
    // A submission keeps its folder across attempts: what an earlier, dead attempt left in
    // process_results is not this attempt's output (the agent lists everything there into its manifest).
    for await (const object of ctx.store.list(job.bucket, keys.process)) await ctx.store.delete(job.bucket, object.key);
  }
  // The agent stages these validated bytes, never a user's file that could change after validation.
  // Both at once; the marker (below) only once they are there, so no folder holds a marker for files that failed.
  await Promise.all([
    ctx.store.put(job.bucket, keys.config, `${JSON.stringify(job.parameters, null, 2)}\n`),
    ctx.store.put(job.bucket, keys.jobDocument, `${JSON.stringify(jobDocumentOf(job, place.location.results), null, 2)}\n`),
  ]);
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
  const spec = agentSpecFor(job, {
    store: ctx.store,
    storeSettings: ctx.storeSettings,
    timestamp,
    instance: `${ctx.launcher.name}@${hostname()}`,
    statusIntervalMs: ctx.statusIntervalMs,
    configCopyName: placement?.configCopyName,
  });
  return ctx.launcher.launch({
    spec,
    identity: job.identity,
    attempt,
    analysis: job.analysis.name,
    group: job.group,
    blueprint: job.analysis.blueprint,
    instanceType: job.input.instance_type ?? job.analysis.blueprint.instance_type,
    deadline: new Date(started.getTime() + maxRuntimeS * 1000),
  });
}

/** Where and how one attempt of a job runs, beyond the job itself. */
export interface AttemptSettings {
  store: ObjectStore;
  storeSettings?: StoreSettings;
  timestamp: string;
  /** The machine's name in the status file. */
  instance: string;
  statusIntervalMs?: number;
  /** The user's config name (a submission): the copy in process_results is named after it. */
  configCopyName?: string;
}

/**
 * The agent spec of one attempt. Checked here once, for every launcher (and `caas dev test`): an
 * agent of this same build then need not check it again.
 */
export function agentSpecFor(job: PreparedJob, settings: AttemptSettings): AgentSpec {
  const names = jobNames(job);
  const listed = job.preimage.inputs.filter((input) => input.listing).map((input) => folderUrl(input.location));
  return AgentSpec.parse({
    store: settings.store.url,
    store_settings: settingsWithUrl(settings.storeSettings, settings.store.url),
    bucket: job.bucket,
    group: job.group,
    timestamp: settings.timestamp,
    dataname: names.dataname,
    inputs: names.inputs,
    // The pre-image's files: those a job named without etag or size were given them when it was prepared.
    input_checks: Object.fromEntries(
      job.preimage.inputs.flatMap((input) =>
        (input.files ?? []).map((f) => [f.url, { ...(f.etag ? { etag: f.etag } : {}), ...(f.size !== undefined ? { size: f.size } : {}) }]),
      ),
    ),
    ...(listed.length > 0 ? { listed_folders: listed } : {}),
    code: { commit: job.preimage.code.commit, ...(job.preimage.code.dirty ? { dirty: job.preimage.code.dirty } : {}) },
    configname: names.configname,
    ...(settings.configCopyName ? { config_copy: settings.configCopyName } : {}),
    command: job.analysis.command,
    analysis_dir: job.analysis.dir,
    instance: settings.instance,
    max_runtime_s: job.analysis.blueprint.max_runtime_minutes * 60,
    status_interval_ms: settings.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS,
    log_limit_bytes: Math.round(job.analysis.blueprint.log_limit_mb * 1024 * 1024),
    environment: job.analysis.blueprint.environment,
  } satisfies AgentSpec);
}

/** How long, at least, a runner that lost its lease waits for the new owner to decide on its attempt. */
const CLAIM_DECISION_MS = 30_000;

/**
 * The lease is gone. If another runner adopted this very attempt (this runner had stalled, its
 * agent had not), the agent must go on: the adopter records it. Otherwise the job is taken.
 */
async function claimLost(ctx: ExecuteContext, identity: string, attempt: number): Promise<'adopted' | 'taken'> {
  // The new owner may still be looking at this attempt (its own is `claimed`): wait for its decision.
  // At least CLAIM_DECISION_MS, since a loaded new owner can take longer than two short leases to
  // decide, and a machine stopped here meanwhile would be one it was about to adopt.
  for (const until = Date.now() + Math.max(2 * ctx.leaseMs, CLAIM_DECISION_MS); ; ) {
    const record = await ctx.db.get(identity).catch(() => undefined);
    const current = record?.attempts.at(-1);
    if (current?.n === attempt && current.status === 'running' && current.adopted?.length) return 'adopted';
    if (current?.status !== 'claimed' || Date.now() > until) return 'taken';
    await sleep(Math.max(100, Math.min(1000, ctx.leaseMs / 10)));
  }
}

/** Writes a job's outcome into its record, against the attempt that produced it. */
class Recorder {
  constructor(
    private readonly job: PreparedJob,
    private readonly ctx: ExecuteContext,
    private readonly started: Date,
    /** The attempt this runner's claim opened; it goes when an earlier attempt is recorded instead. */
    private readonly claimed: number,
  ) {}

  async record(verdict: Verification, where: JobLocation, instance: string | null, attempt: number): Promise<JobResult> {
    const { job, ctx } = this;
    const ended = new Date();
    const status = verdict.succeeded ? 'succeeded' : 'failed';
    const start = verdict.start ?? this.started.toISOString();
    const end = verdict.end ?? ended.toISOString();
    const base = { where: job.where, identity: job.identity };
    const processing = verdict.succeeded
      ? aindProcessingOf(jobDocumentOf(job, where.results), { start, end, outputParameters: verdict.outputParameters })
      : undefined;
    const instanceType = job.input.instance_type ?? job.analysis.blueprint.instance_type;
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
          type: job.input.instance_type ?? job.analysis.blueprint.instance_type,
        },
        exit_code: verdict.exitCode,
        reason: verdict.reason,
        stderr_tail: verdict.stderrTail,
        start,
        end,
        duration_s: (Date.parse(end) - Date.parse(start)) / 1000,
        ...(processing ? { processing } : {}),
        attempts: current.attempts
          .filter((a) => a.n === attempt || a.n !== this.claimed)
          .map((a) => {
            if (a.n !== attempt) return a;
            // Recorded: no longer an attempt whose runner lapsed, so no later claim looks at it again.
            const { lapsed: _, ...rest } = a;
            return {
              ...rest,
              status,
              ended: ended.toISOString(),
              reason: verdict.reason,
              exit_code: verdict.exitCode,
              results: where.results,
              cost: attemptCost(job.analysis.blueprint, instanceType, a.started, verdict.end ?? ended.toISOString()),
            };
          }),
      }),
    );
    if (!written) return this.notWritten(attempt);
    return {
      ...base,
      attempt,
      outcome: status,
      reason: verdict.reason,
      results: where.results,
      durationS: (ended.getTime() - this.started.getTime()) / 1000,
    };
  }

  /** The record was not this runner's to write any more: another runner adopted the attempt, or took the job over. */
  private async notWritten(attempt: number): Promise<JobResult> {
    const { job, ctx } = this;
    const base = { where: job.where, identity: job.identity, attempt };
    // The machine may have ended before this runner noticed it had lost its lease to an adopter.
    const now = await ctx.db.get(job.identity).catch(() => undefined);
    const adopted = now?.attempts.find((a) => a.n === attempt)?.adopted?.some((x) => !sameOwner(x.by, ctx.owner));
    if (adopted) return { ...base, outcome: 'running', reason: ADOPTED_ELSEWHERE };
    return { ...base, outcome: 'lost', reason: 'another runner took over this job before its record was written' };
  }
}

/** Unique per attempt (time to the millisecond plus the identity), so no job folder is ever reused. */
export function jobTimestamp(at: Date, identity: string): string {
  return `${at.toISOString().replace(/[-:]/g, '').replace('.', '')}-${identity.slice(0, 8)}`;
}

/** What the submit file names: the data (one file, or the asset folder) and the config. */
/** What the analysis is told about its job ($CAAS_JOB): the same document wherever it runs. */
function jobDocumentOf(job: PreparedJob, results: string): JobDocument {
  const { commit, dirty, url } = job.preimage.code;
  return {
    identity: job.identity,
    analysis: { name: job.analysis.name, version: job.analysis.version },
    code: { url: url ?? job.analysis.dir, commit, ...(dirty ? { dirty } : {}) },
    command: job.analysis.command,
    outputs_file: job.analysis.outputs?.file ?? null,
    parameters: job.parameters,
    inputs: job.input.inputs,
    group: job.group,
    group_metadata: job.input.group_metadata ?? null,
    results,
    folder_listings: Object.fromEntries(
      job.preimage.inputs.filter((input) => input.listing).map((input) => [folderUrl(input.location), input.listing ?? []]),
    ),
  };
}

export function jobNames(job: PreparedJob): { dataname: string; configname: string; inputs: string[] } {
  const files = job.input.inputs.flatMap((input) => input.files?.map((f) => f.url) ?? [folderUrl(input.location)]);
  return {
    dataname: files.length === 1 ? files[0]! : job.input.inputs[0]!.location,
    configname: `caas-${job.identity.slice(0, 16)}.json`,
    inputs: files,
  };
}

function placeOf(job: PreparedJob, store: ObjectStore, timestamp: string): Place {
  const names = jobNames(job);
  const keys = jobKeys(job.bucket, job.group, timestamp, names.dataname, names.configname);
  return {
    timestamp,
    keys,
    location: {
      store: store.scheme,
      bucket: job.bucket,
      group: job.group,
      timestamp,
      results: objectUrl(store.scheme, job.bucket, keys.process),
      logs: objectUrl(store.scheme, job.bucket, keys.logs),
    },
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
    inputs: job.input.inputs,
    query: job.input.provenance ?? null,
    ...(job.input.group_metadata && { group_metadata: job.input.group_metadata }),
    job: null,
    outputs: null,
    compute: {
      backend: ctx.launcher.name,
      host: hostname(),
      instance: null,
      type: job.input.instance_type ?? job.analysis.blueprint.instance_type,
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

interface LeaseRenewal {
  /** Resolves when the claim is gone (another runner holds it). */
  lost: Promise<void>;
  stop(): void;
}

/** Renews the lease at a third of its length; `lost` resolves when the claim is gone. */
function startLeaseRenewal(ctx: ExecuteContext, identity: string): LeaseRenewal {
  let markLost: () => void = () => {};
  const lost = new Promise<void>((resolve) => {
    markLost = resolve;
  });
  const timer = setInterval(
    () => {
      void ctx.db.renew(identity, ctx.owner, ctx.leaseMs).then(
        (held) => {
          if (!held) markLost();
        },
        () => {},
      );
    },
    Math.max(50, Math.floor(ctx.leaseMs / 3)),
  );
  return {
    lost,
    stop() {
      clearInterval(timer);
    },
  };
}
