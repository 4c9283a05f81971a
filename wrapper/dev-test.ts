import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { getText, type ObjectStore, type StoreSettings } from '../backends/storage/index.ts';
import { submitKey } from '../models/bucket-contract.ts';
import type { DevInstance } from '../models/dev-instance.ts';
import { DevJobDone, type DevJobKeys, DevJobTaken, devJobKeys } from '../models/dev-instance.ts';
import { describeIssues } from '../models/issues.ts';
import { SubmitFile } from '../models/submit.ts';
import { parseJsonText } from '../models/untrusted-json.ts';
import { oneLine } from './certificate-notes.ts';
import { chooseDevInstance, DevRefused, type DevTarget, durationText, refuseLocalStore } from './dev-instances.ts';
import { agentSpecFor, DEFAULT_STATUS_INTERVAL_MS, jobNames } from './execute.ts';
import { type FollowResult, followJob } from './follow.ts';
import { JobPreparer, type PreparedJob } from './prepare.ts';
import { type FolderKeys, folderKeys, MAX_SUBMIT_BYTES, readSubmit, type SubmissionMarker, validateSubmission } from './submission.ts';

/** How often, at most, the instance's state is asked for while a test job runs (DescribeInstances is rate-limited). */
const INSTANCE_LOOK_MS = 15_000;

export interface DevTestOptions {
  target: DevTarget;
  /** Default: the one development instance of the analysis and owner. */
  instanceId?: string;
  store: ObjectStore;
  storeSettings?: StoreSettings;
  /** A NeuroCAAS submit file on this machine, naming data and a config already in the analysis bucket. */
  submitFile: string;
  /** Default: the group its dataname lies in, or the blueprint's only group. */
  group?: string;
  out: (line: string) => void;
  /** Between looks at the job folder. */
  intervalMs: number;
  /** How long the instance has to take the job before it is withdrawn. */
  pickupMs: number;
  statusIntervalMs?: number;
  roots?: string[];
}

/** A test job ready for the instance: where it answers and the objects it travels as. */
interface DevJob {
  instance: DevInstance;
  folder: FolderKeys;
  keys: DevJobKeys;
  maxRuntimeMs: number;
  bucket: string;
  group: string;
}

/**
 * One job of a submit file on the development instance (NeuroCAAS's `submit_job` on a dev
 * instance): validated as a watcher would, written under the bucket contract (submit file, config,
 * the job folder's marker), handed to the instance's job loop as an agent spec under `.caas/dev/`,
 * and followed to its end.txt. Nothing is recorded in the metadata DB: the instance runs whatever
 * is on its disk, which no commit describes (docs/aws.md, "Developer instances").
 */
export async function runDevTest(options: DevTestOptions): Promise<FollowResult> {
  refuseLocalStore(options.store.url);
  const instance = await chooseDevInstance(options.target, options.instanceId);
  if (instance.state !== 'running') {
    throw new DevRefused(
      `${instance.id} is ${instance.state}: a test job needs it running (caas dev start ${options.target.analysis.name})`,
    );
  }
  const job = await sendDevJob(options, instance);
  const taken = await awaitPickup(options, job);
  if (taken) return taken;
  return followDevJob(options, job);
}

/** Checks the submit file and writes the job: refused with the file's name and the field before anything is written. */
async function sendDevJob(options: DevTestOptions, instance: DevInstance): Promise<DevJob> {
  const { store, target, out } = options;
  const { analysis } = target;
  const bucket = analysis.blueprint.bucket;
  const { bytes, submit } = await readSubmitFile(options.submitFile);
  const group =
    options.group ??
    groupOf(
      submit,
      analysis.blueprint.groups.map((g) => g.name),
      options.submitFile,
    );
  const key = submitKey(group, submit.timestamp);
  const read = readSubmit(key, group, bytes);
  // A development job runs uncommitted code by design, so the analysis folder may be dirty here.
  const preparer = new JobPreparer({ storeScheme: store.scheme, allowDirty: true, roots: options.roots });
  const validation = await validateSubmission(read, { store, bucket, analysis, preparer });
  if (!validation.ok) throw new DevRefused(`${options.submitFile}: ${validation.reason}`);
  const { datasets, configname } = validation.submission;
  if (datasets.length !== 1) {
    throw new DevRefused(`${options.submitFile}: dataname lists ${datasets.length} datasets; a test job runs one: name one dataset`);
  }
  const folder = folderKeys(bucket, group, submit.timestamp);
  if (await store.head(bucket, key)) throw new DevRefused(`${key} already exists: use another timestamp in ${options.submitFile}`);
  for await (const used of store.list(bucket, folder.prefix)) {
    throw new DevRefused(`timestamp ${submit.timestamp} is already used (${used.key} exists): use another one in ${options.submitFile}`);
  }
  const prepared = datasets[0]!.prepared;
  const maxRuntimeMs = analysis.blueprint.max_runtime_minutes * 60_000;
  await writeJobFolder(store, prepared, { key, sha256: read.sha256, bytes, folder, maxRuntimeMs });
  const { code: _unchecked, ...spec } = agentSpecFor(prepared, {
    store,
    storeSettings: options.storeSettings,
    timestamp: submit.timestamp,
    instance: instance.id,
    statusIntervalMs: options.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS,
    configCopyName: configname,
  });
  const keys = devJobKeys(instance.id, group, submit.timestamp);
  if (!(await store.putIfAbsent(bucket, keys.spec, `${JSON.stringify(spec)}\n`))) {
    throw new DevRefused(`${keys.spec} already exists: use another timestamp in ${options.submitFile}`);
  }
  out(`job folder: ${store.scheme}://${bucket}/${folder.prefix}`);
  out(`sent to ${instance.id}: waiting for it to take the job`);
  if (instance.expiry && Date.parse(instance.expiry) < Date.now() + maxRuntimeMs) {
    out(`note: ${instance.id} stops at ${instance.expiry}, before this job's max runtime could end (caas dev extend ${analysis.name})`);
  }
  return { instance, folder, keys, maxRuntimeMs, bucket, group };
}

async function readSubmitFile(file: string): Promise<{ bytes: Buffer; submit: SubmitFile }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    throw new DevRefused(`${file}: cannot read the submit file (${(error as Error).message})`);
  }
  if (bytes.length > MAX_SUBMIT_BYTES) throw new DevRefused(`${file}: larger than ${MAX_SUBMIT_BYTES} bytes, not a submit file`);
  const parsed = parseJsonText(bytes.toString('utf8'));
  if (!parsed.ok) throw new DevRefused(`${file}: ${parsed.reason}`);
  const submit = SubmitFile.safeParse(parsed.value);
  if (!submit.success) throw new DevRefused(`${file}: ${describeIssues(submit.error)}`);
  return { bytes, submit: submit.data };
}

/** The group a submit file is for: where its dataname lies (`{group}/inputs/…`), else the blueprint's only group. */
function groupOf(submit: SubmitFile, groups: string[], file: string): string {
  const first = typeof submit.dataname === 'string' ? submit.dataname : submit.dataname[0]!;
  const named = /^(?:[a-z][a-z0-9+.-]*:\/\/[^/]+\/)?([^/]+)\/inputs\//.exec(first)?.[1];
  if (named !== undefined && groups.includes(named)) return named;
  if (groups.length === 1) return groups[0]!;
  throw new DevRefused(`${file}: its dataname names none of the blueprint's groups (${groups.join(', ')}): pass --group`);
}

/**
 * The job folder as `caas run` starts one: caas's copy of the validated config, the marker (a
 * watcher of the bucket then leaves the folder alone), the submit file as the developer wrote it.
 */
async function writeJobFolder(
  store: ObjectStore,
  job: PreparedJob,
  write: { key: string; sha256: string; bytes: Buffer; folder: FolderKeys; maxRuntimeMs: number },
): Promise<void> {
  const { bucket } = job;
  await store.put(bucket, `${job.group}/configs/${jobNames(job).configname}`, `${JSON.stringify(job.parameters, null, 2)}\n`);
  const now = Date.now();
  const marker: SubmissionMarker = {
    written_by: 'caas dev test',
    submit_key: write.key,
    submit_sha256: write.sha256,
    owner: { host: hostname(), pid: process.pid, run: randomUUID() },
    claimed: new Date(now).toISOString(),
    lease_expires: new Date(now + write.maxRuntimeMs + 3_600_000).toISOString(),
  };
  if (
    !(await store.putIfAbsent(bucket, write.folder.marker, `${JSON.stringify(marker, null, 2)}\n`)) ||
    !(await store.putIfAbsent(bucket, write.key, write.bytes))
  ) {
    throw new DevRefused(`job folder ${write.folder.prefix} or submit file ${write.key} appeared meanwhile: use another timestamp`);
  }
}

/**
 * Waits for the instance's job loop to take the job. If it does not in time (no caas on the
 * instance, a loop that is down) or the instance stops, the job is withdrawn, put-if-absent on the
 * same `.taken` the loop writes, so it never runs later behind the developer's back; its folder
 * then ends with end.txt. Returns that failure, or undefined once the instance has the job.
 */
async function awaitPickup(options: DevTestOptions, job: DevJob): Promise<FollowResult | undefined> {
  const { store, out } = options;
  const giveUp = Date.now() + options.pickupMs;
  let nextLook = Date.now() + INSTANCE_LOOK_MS;
  for (;;) {
    const taken = parseTaken(await getText(store, job.bucket, job.keys.taken));
    if (taken?.by === 'instance') {
      out(`${job.instance.id} took the job at ${taken.at}`);
      return undefined;
    }
    let why: string | undefined;
    if (taken) why = `the job was withdrawn: ${taken.note}`;
    else if (Date.now() >= giveUp) {
      why =
        `${job.instance.id} did not take the job within ${durationText(options.pickupMs)}: is caas at /opt/caas on it ` +
        '(see "Developer instances" in docs/aws.md)? Its log is /var/lib/caas-dev/log';
    } else if (Date.now() >= nextLook) {
      nextLook = Date.now() + INSTANCE_LOOK_MS;
      const now = await options.target.api.get(job.instance.id);
      if (now?.state !== 'running') why = `${job.instance.id} is ${now?.state ?? 'gone'}: it cannot take the job`;
    }
    if (why !== undefined) {
      const withdrawal: DevJobTaken = { by: 'withdrawn', at: new Date().toISOString(), note: why };
      if (taken || (await store.putIfAbsent(job.bucket, job.keys.taken, `${JSON.stringify(withdrawal)}\n`))) {
        if (!(await store.head(job.bucket, job.folder.end))) await store.put(job.bucket, job.folder.end, `FAILED\n${oneLine(why)}\n`);
        out(`failed: ${why}`);
        return { outcome: 'failed', exitCode: 1, results: '' };
      }
      continue;
    }
    await sleep(options.intervalMs);
  }
}

/**
 * Follows the job folder as `caas submit --follow` does, and stops with a reason when the job can
 * no longer end by itself: the agent exited without end.txt, the instance stopped (its lifetime
 * ran out), or the max runtime passed with no answer.
 */
async function followDevJob(options: DevTestOptions, job: DevJob): Promise<FollowResult> {
  const { store, out } = options;
  const stop = new AbortController();
  let why: string | undefined;
  const deadline = Date.now() + job.maxRuntimeMs + 120_000;
  const watch = (async () => {
    let nextLook = Date.now() + INSTANCE_LOOK_MS;
    while (!stop.signal.aborted) {
      await sleep(options.intervalMs, undefined, { signal: stop.signal }).catch(() => {});
      if (stop.signal.aborted) return;
      try {
        why = await endedWithoutAnswer(options, job, nextLook, deadline);
        if (Date.now() >= nextLook) nextLook = Date.now() + INSTANCE_LOOK_MS;
      } catch {
        // A look that failed is taken again at the next interval.
      }
      if (why !== undefined) stop.abort(why);
    }
  })();
  try {
    const ref = { bucket: job.bucket, group: job.group, timestamp: job.folder.timestamp };
    return await followJob({ store, job: ref, out, intervalMs: options.intervalMs, signal: stop.signal });
  } catch (error) {
    if (why === undefined) throw error;
    out(`failed: ${why}; logs so far at ${store.scheme}://${job.bucket}/${job.folder.logs}`);
    return { outcome: 'failed', exitCode: 1, results: '' };
  } finally {
    stop.abort('followed to the end');
    await watch;
  }
}

/** Why the job will never write end.txt, when that is known; undefined while it may still. */
async function endedWithoutAnswer(options: DevTestOptions, job: DevJob, nextLook: number, deadline: number): Promise<string | undefined> {
  const { store } = options;
  const ended = () => store.head(job.bucket, job.folder.end);
  const done = parseDone(await getText(store, job.bucket, job.keys.done));
  if (done && !(await ended())) {
    return `the agent on ${job.instance.id} exited (code ${done.exit_code ?? 'unknown'}) without writing end.txt; its output is in /var/lib/caas-dev/log there`;
  }
  if (Date.now() >= deadline && !(await ended())) {
    return `no end.txt ${durationText(job.maxRuntimeMs + 120_000)} after the job was sent, past the analysis' max runtime`;
  }
  if (Date.now() < nextLook) return undefined;
  const instance = await options.target.api.get(job.instance.id);
  if (instance?.state !== 'running' && !(await ended())) {
    return `${job.instance.id} is ${instance?.state ?? 'gone'} (its lifetime may be over: caas dev status ${options.target.analysis.name})`;
  }
  return undefined;
}

function parseTaken(text: string | undefined): DevJobTaken | undefined {
  if (text === undefined) return undefined;
  const parsed = DevJobTaken.safeParse(safeJson(text));
  // Written, yet unreadable (caught mid-write): taken, and the follow that comes next sees how the job ends.
  return parsed.success ? parsed.data : { by: 'instance', at: 'an unknown time', note: '' };
}

function parseDone(text: string | undefined): DevJobDone | undefined {
  if (text === undefined) return undefined;
  const parsed = DevJobDone.safeParse(safeJson(text));
  return parsed.success ? parsed.data : { exit_code: null, at: '' };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
