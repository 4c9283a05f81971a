import { setTimeout as sleep } from 'node:timers/promises';
import { getText, type ObjectStore, objectUrl } from '../backends/storage/index.ts';
import type { JobRef } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import { StatusFile } from '../models/status.ts';
import { type FolderKeys, folderKeys, parseMarker, rejectionNoteKey, UNREADABLE_MARKER } from './submission.ts';

/** The job named is not in the store: the user's reference (exit 2). */
export class NoJobFolder extends CaasError {}

export type FollowOutcome = 'succeeded' | 'failed' | 'rejected' | 'conflict';

export interface FollowResult {
  outcome: FollowOutcome;
  /** 0 success, 1 failure, 2 rejection (the submission was never run). */
  exitCode: 0 | 1 | 2;
  /** Where the results are: process_results/ of this folder, or of the record it was answered from. */
  results: string;
}

export interface FollowOptions {
  store: ObjectStore;
  job: JobRef;
  out: (line: string) => void;
  intervalMs: number;
  /** When following one's own submission: a folder claimed for another submit file is a rejection of this one. */
  submit?: { key: string; sha256: string };
  signal?: AbortSignal;
}

/**
 * Follows a job folder until end.txt appears: says when the folder appears, prints new certificate
 * lines, status changes and new stdout lines as they arrive, then the outcome and where the results
 * are. end.txt is written last, so everything before it has been printed when this returns.
 */
export async function followJob(options: FollowOptions): Promise<FollowResult> {
  const view = new FolderView(options.store, options.job, options.out);
  let announced = false;
  let failures = 0;
  let unrecognised: { text: string; since: number } | undefined;
  const over = (ended: string | undefined): ended is string => {
    if (ended === undefined) return false;
    if (isCompleteEnd(ended)) return true;
    // Some S3-compatible servers (s3rver) show an object while its bytes are still being written:
    // such a read is looked at again. What stays the same is what someone really wrote.
    if (unrecognised?.text !== ended) unrecognised = { text: ended, since: Date.now() };
    return Date.now() - unrecognised.since >= UNRECOGNISED_END_SETTLE_MS;
  };
  const look = async (): Promise<FollowResult | undefined> => {
    const read = parseMarker(await view.text(view.keys.marker));
    // Likewise a marker caught mid-write. One that stays unreadable is answered by the watcher with
    // a rejection note, read below.
    const marker = read?.submit_key === UNREADABLE_MARKER ? undefined : read;
    if (marker && !announced) {
      announced = true;
      options.out(`job folder ${view.url(view.keys.prefix)} appeared`);
    }
    if (options.submit) {
      const mine = marker === undefined || (marker.submit_key === options.submit.key && marker.submit_sha256 === options.submit.sha256);
      const note = await view.text(rejectionNoteKey(options.submit.key));
      if (!mine || note !== undefined) {
        options.out(
          note?.trim() ?? `job folder ${view.url(view.keys.prefix)} belongs to ${marker?.submit_key}: submit again with a new timestamp`,
        );
        return { outcome: 'conflict', exitCode: 2, results: '' };
      }
    }
    const ended = await view.text(view.keys.end);
    const final = over(ended);
    // Until the end, a line still being written is left for the next look.
    await view.printNew(undefined, final);
    return final ? view.finish(ended) : undefined;
  };
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const result = await look();
      if (result) return result;
      failures = 0;
    } catch (error) {
      // A dropped connection while the job runs is no reason to stop following; a store that stays unreachable is.
      if (++failures >= MAX_FAILED_LOOKS) throw error;
    }
    await sleep(options.intervalMs, undefined, { signal: options.signal });
  }
}

const MAX_FAILED_LOOKS = 20;
const UNRECOGNISED_END_SETTLE_MS = 10_000;

/** end.txt as caas writes it: a verdict line, then the reason, every line ending in a newline. */
function isCompleteEnd(text: string): boolean {
  return /^(SUCCESS|FAILED|REJECTED)\n/.test(text) && text.endsWith('\n');
}

/** `caas logs` without --follow: certificate, status files, the tail of stdout, and the outcome if over. */
export async function showJob(store: ObjectStore, job: JobRef, out: (line: string) => void, tail = 20): Promise<FollowResult | undefined> {
  const view = new FolderView(store, job, out);
  const listed = await view.listLogs();
  const ended = await view.text(view.keys.end);
  if (listed.length === 0 && ended === undefined) {
    throw new NoJobFolder(`no job folder at ${view.url(view.keys.prefix)}: check the bucket, group and timestamp (and --store)`);
  }
  view.stdoutTail = tail;
  await view.printNew(listed);
  if (ended === undefined) {
    out('(the job is not over yet: add --follow to wait for it)');
    return undefined;
  }
  return view.finish(ended);
}

class FolderView {
  readonly keys: FolderKeys;
  private certificateLines = 0;
  private stdoutLines = 0;
  private readonly statuses = new Map<string, string>();
  /** When set, only the last lines of stdout are printed (logs without --follow). */
  stdoutTail: number | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly job: JobRef,
    private readonly out: (line: string) => void,
  ) {
    this.keys = folderKeys(job.bucket, job.group, job.timestamp);
  }

  url(key: string): string {
    return objectUrl(this.store.scheme, this.job.bucket, key);
  }

  text(key: string): Promise<string | undefined> {
    return getText(this.store, this.job.bucket, key);
  }

  async listLogs(): Promise<string[]> {
    const keys: string[] = [];
    for await (const info of this.store.list(this.job.bucket, this.keys.logs)) keys.push(info.key);
    return keys;
  }

  /**
   * Prints what is new since the last call; `listed` is logs/ as the caller already listed it.
   * Unless `final`, a last line without its newline is not printed yet: it may be half written.
   */
  async printNew(listed?: string[], final = true): Promise<void> {
    const certificate = lines(await this.text(this.keys.certificate), final);
    // The agent rewrites the certificate whole; a shorter one is a new attempt starting over.
    if (certificate.length < this.certificateLines) this.certificateLines = 0;
    for (const line of certificate.slice(this.certificateLines)) this.out(line);
    this.certificateLines = certificate.length;

    for (const key of listed ?? (await this.listLogs())) {
      // Status files are named after data sets this view does not know: matched in the listing.
      const name = /DATASET_NAME-(.*)_STATUS\.json$/.exec(key)?.[1];
      if (name === undefined) continue;
      const parsed = StatusFile.safeParse(safeJson(await this.text(key)));
      if (!parsed.success) continue;
      const summary = `${parsed.data.status}${parsed.data.reason ? ` (${parsed.data.reason})` : ''}`;
      if (this.statuses.get(name) !== summary) this.out(`status ${name}: ${summary}`);
      this.statuses.set(name, summary);
    }

    const stdout = lines(await this.text(this.keys.stdout), final);
    if (stdout.length < this.stdoutLines) this.stdoutLines = 0;
    const from = this.stdoutTail !== undefined ? Math.max(this.stdoutLines, stdout.length - this.stdoutTail) : this.stdoutLines;
    for (const line of stdout.slice(from)) this.out(`  | ${line}`);
    this.stdoutLines = stdout.length;
  }

  async finish(ended: string): Promise<FollowResult> {
    const [verdict = '', reason = ''] = ended.split('\n');
    let results = this.url(this.keys.process);
    const link = safeJson(await this.text(this.keys.link)) as { results?: unknown } | undefined;
    if (typeof link?.results === 'string') results = link.results;
    if (verdict === 'REJECTED') {
      this.out(`rejected: ${reason} (nothing ran; fix the submission and submit again with a new timestamp)`);
      return { outcome: 'rejected', exitCode: 2, results: '' };
    }
    if (verdict === 'SUCCESS') {
      this.out(`succeeded: results at ${results}`);
      return { outcome: 'succeeded', exitCode: 0, results };
    }
    this.out(`failed: ${reason || 'see the certificate above'}; logs and partial results at ${this.url(this.keys.prefix)}`);
    return { outcome: 'failed', exitCode: 1, results };
  }
}

function lines(text: string | undefined, withUnfinished: boolean): string[] {
  const all = (text ?? '').split('\n');
  // split leaves what follows the last newline last: "" for a finished text, else an unfinished line.
  if (!withUnfinished) all.pop();
  return all.filter((line) => line.trim() !== '');
}

function safeJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
