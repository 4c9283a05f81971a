import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { aindOfJobInput } from '../models/aind-dispatch.ts';
import type { JobInput } from '../models/job-input.ts';
import { DispatchError } from './dispatch-error.ts';

/** A job with its JSONL line (exactly JSON.stringify(job), built by the dispatcher from cached pieces). */
export interface EmittedJob {
  job: JobInput;
  line: string;
}

/**
 * Where jobs go. Nothing reaches a named target until commit(): files are written beside it under
 * a temporary name and renamed into place, so a dispatch that fails leaves no partial output.
 */
export interface JobSink {
  /** The jobs of one batch (an await per batch rather than per job). */
  write(batch: readonly EmittedJob[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** jsonl and dir write caas job inputs; aind and aind-jsonl the same jobs as AIND dispatch models. */
export type OutputFormat = 'jsonl' | 'dir' | 'aind' | 'aind-jsonl';

/** Lines are gathered into writes of about this size: one syscall per line would dominate at 300k jobs. */
const WRITE_BYTES = 256 * 1024;
/** Job files written at once by --format dir. */
const FILES_IN_FLIGHT = 16;

/** How a folder of jobs is laid out: where job n goes, what it holds, and what an earlier output of the same layout holds. */
interface FolderLayout {
  /** The folder's own name in messages. */
  what: string;
  file(n: number): string;
  text(job: JobInput): string;
  /** The entries of an existing target folder that this layout did not write: it is replaced only when there are none. */
  foreign(target: string): Promise<string[]>;
}

const JOB_FILE = /^job-\d{9}\.json$/;

/** job-000000001.json, ... (nine digits, so name order is job order for any batch). */
const JOB_FILES: FolderLayout = {
  what: 'job-*.json',
  file: (n) => jobFileName(n),
  text: (job) => `${JSON.stringify(job, null, 2)}\n`,
  foreign: async (target) => (await readdir(target)).filter((name) => !JOB_FILE.test(name)),
};

/**
 * AIND's layout: one folder per worker (0/, 1/, ..., one job each, as aind-analysis-job-dispatch
 * writes with tasks_per_job 1), each holding the job's AIND dispatch model indented as pydantic
 * writes it. The file is named by the job's number rather than a random uuid, so reruns are
 * byte-identical.
 */
const AIND_FOLDERS: FolderLayout = {
  what: 'numbered folders of job-*.json',
  file: (n) => path.join(String(n - 1), jobFileName(n)),
  text: (job) => `${JSON.stringify(aindOfJobInput(job), null, 4)}\n`,
  foreign: async (target) => {
    const foreign: string[] = [];
    for (const entry of await readdir(target, { withFileTypes: true })) {
      const own =
        entry.isDirectory() &&
        /^\d+$/.test(entry.name) &&
        (await readdir(path.join(target, entry.name))).every((name) => JOB_FILE.test(name));
      if (!own) foreign.push(entry.name);
    }
    return foreign;
  },
};

function jobFileName(n: number): string {
  return `job-${String(n).padStart(9, '0')}.json`;
}

export async function openSink(format: OutputFormat, target: string | undefined, stdout: Writable): Promise<JobSink> {
  if (format === 'dir' || format === 'aind') {
    if (target === undefined || target === '-') {
      throw new DispatchError(
        format === 'dir'
          ? '--format dir needs -o <folder>: it writes one JSON file per job'
          : '--format aind needs -o <folder>: it writes one folder per job (0/, 1/, ...) holding its AIND dispatch model; --format aind-jsonl writes them as lines',
      );
    }
    return DirSink.open(path.resolve(target), format === 'dir' ? JOB_FILES : AIND_FOLDERS);
  }
  const lineOf = format === 'aind-jsonl' ? (emitted: EmittedJob) => JSON.stringify(aindOfJobInput(emitted.job)) : undefined;
  if (target === undefined || target === '-') return new JsonlSink(stdout, async () => {}, lineOf);
  const file = path.resolve(target);
  const folder = await stat(path.dirname(file)).catch(() => undefined);
  if (!folder?.isDirectory()) throw new DispatchError(`-o ${target}: the folder ${path.dirname(file)} does not exist`);
  if ((await stat(file).catch(() => undefined))?.isDirectory())
    throw new DispatchError(`-o ${target} is a folder; use --format dir to write one file per job there`);
  const tmp = temporaryBeside(file);
  const stream = createWriteStream(tmp);
  return new JsonlSink(
    stream,
    async (committed) => {
      if (!committed) {
        // A stream destroyed while still opening creates its file afterwards; remove it only once closed.
        if (!stream.closed) await new Promise<void>((resolve) => stream.destroy().once('close', () => resolve()));
        await rm(tmp, { force: true });
        return;
      }
      stream.end();
      try {
        await finished(stream);
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
      await rename(tmp, file);
    },
    lineOf,
  );
}

function temporaryBeside(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
}

class JsonlSink implements JobSink {
  private buffer = '';
  private failure: Error | undefined;

  constructor(
    private readonly stream: Writable,
    private readonly close: (committed: boolean) => Promise<void>,
    /** The line of a job when it is not the caas JSONL line the dispatcher built. */
    private readonly lineOf?: (job: EmittedJob) => string,
  ) {
    // A write error (disk full, closed pipe) is reported by the next write, not as a crash.
    stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  async write(batch: readonly EmittedJob[]): Promise<void> {
    for (const emitted of batch) this.buffer += `${this.lineOf ? this.lineOf(emitted) : emitted.line}\n`;
    if (this.buffer.length >= WRITE_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.buffer === '') return;
    const chunk = this.buffer;
    this.buffer = '';
    if (this.stream.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        this.stream.off('drain', done).off('error', done);
        if (error) reject(error);
        else resolve();
      };
      this.stream.on('drain', done).on('error', done);
    });
  }

  async commit(): Promise<void> {
    await this.flush();
    await this.close(true);
  }

  async abort(): Promise<void> {
    this.buffer = '';
    await this.close(false).catch(() => {});
  }
}

/**
 * --format dir and aind: the layout's files in a temporary folder beside the target, renamed into
 * place at the end. A folder already at the target is replaced only if it holds nothing but what
 * the same layout writes (an earlier dispatch's output).
 */
class DirSink implements JobSink {
  private count = 0;
  private inFlight: Promise<void>[] = [];

  private constructor(
    private readonly target: string,
    private readonly tmp: string,
    private readonly layout: FolderLayout,
  ) {}

  static async open(target: string, layout: FolderLayout): Promise<DirSink> {
    await assertReplaceable(target, layout);
    const tmp = temporaryBeside(target);
    await rm(tmp, { recursive: true, force: true });
    try {
      await mkdir(tmp);
    } catch (error) {
      throw new DispatchError(`-o ${target}: cannot create ${tmp}: ${(error as Error).message}`);
    }
    return new DirSink(target, tmp, layout);
  }

  async write(batch: readonly EmittedJob[]): Promise<void> {
    for (const { job } of batch) {
      const file = path.join(this.tmp, this.layout.file(++this.count));
      const text = this.layout.text(job);
      const folder = path.dirname(file);
      const write = (folder === this.tmp ? Promise.resolve() : mkdir(folder, { recursive: true })).then(() => writeFile(file, text));
      // Awaited by settle(); until then a failed write must not count as an unhandled rejection.
      write.catch(() => {});
      this.inFlight.push(write.then(() => {}));
    }
    if (this.inFlight.length >= FILES_IN_FLIGHT) await this.settle();
  }

  private async settle(): Promise<void> {
    const writes = this.inFlight;
    this.inFlight = [];
    await Promise.all(writes);
  }

  async commit(): Promise<void> {
    await this.settle();
    await assertReplaceable(this.target, this.layout);
    const old = `${this.tmp}.old`;
    const existed = await stat(this.target).then(
      () => true,
      () => false,
    );
    if (existed) await rename(this.target, old);
    await rename(this.tmp, this.target);
    if (existed) await rm(old, { recursive: true, force: true });
  }

  async abort(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    await rm(this.tmp, { recursive: true, force: true });
  }
}

async function assertReplaceable(target: string, layout: FolderLayout): Promise<void> {
  const info = await stat(target).catch(() => undefined);
  if (!info) {
    const parent = await stat(path.dirname(target)).catch(() => undefined);
    if (!parent?.isDirectory()) throw new DispatchError(`-o ${target}: the folder ${path.dirname(target)} does not exist`);
    return;
  }
  if (!info.isDirectory())
    throw new DispatchError(`-o ${target} exists and is not a folder (--format dir and aind write a folder of job files)`);
  const foreign = await layout.foreign(target);
  if (foreign.length > 0) {
    throw new DispatchError(
      `-o ${target} holds other files than ${layout.what} (${foreign.slice(0, 3).join(', ')}); choose a new or empty folder`,
    );
  }
}
