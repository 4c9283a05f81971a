import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { LogCut } from '../models/status.ts';

interface Segment {
  path: string;
  handle: FileHandle;
  bytes: number;
}

/** What a snapshot of the log holds: the file to upload and, when the log outgrew its limit, what was cut. */
export interface LogSnapshot {
  path: string;
  bytes: number;
  cut?: LogCut;
}

/**
 * An analysis' stdout or stderr on disk, bounded whatever the analysis prints: the first half of
 * the limit is kept as it comes, the rest goes to tail segments of half the limit each, of which
 * only the newest two are kept. Disk use stays under 1.5x the limit (plus one snapshot), memory
 * under a chunk, and a snapshot is the head, a line saying what was cut, and the last half-limit
 * of bytes. Writes apply backpressure, so a fast writer waits for the disk instead of filling memory.
 */
export class CappedLog extends Writable {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private head: FileHandle | undefined;
  private headBytes = 0;
  private previous: Segment | undefined;
  private current: Segment | undefined;
  private segments = 0;
  private written = 0;
  private snapshotBytes = -1;
  /** File operations one after the other: appends, rotations and snapshots never interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    limitBytes: number,
  ) {
    super();
    this.headLimit = Math.ceil(limitBytes / 2);
    this.tailLimit = Math.max(1, Math.floor(limitBytes / 2));
  }

  /** Bytes the analysis wrote, kept or not. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Whether anything was written since the last snapshot. */
  get changed(): boolean {
    return this.written !== this.snapshotBytes;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.serially(() => this.append(chunk)).then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.serially(async () => {
      await this.openHead();
    }).then(() => done(), done);
  }

  private serially<T>(operation: () => Promise<T>): Promise<T> {
    const next = this.queue.then(operation);
    this.queue = next.catch(() => {});
    return next;
  }

  private async openHead(): Promise<FileHandle> {
    this.head ??= await open(this.file, 'w');
    return this.head;
  }

  private async append(chunk: Buffer): Promise<void> {
    this.written += chunk.length;
    let rest = chunk;
    if (this.headBytes < this.headLimit) {
      const taken = rest.subarray(0, this.headLimit - this.headBytes);
      await (await this.openHead()).write(taken);
      this.headBytes += taken.length;
      rest = rest.subarray(taken.length);
    }
    while (rest.length > 0) {
      if (!this.current || this.current.bytes >= this.tailLimit) await this.rotate();
      const segment = this.current!;
      const taken = rest.subarray(0, this.tailLimit - segment.bytes);
      await segment.handle.write(taken);
      segment.bytes += taken.length;
      rest = rest.subarray(taken.length);
    }
  }

  /** The oldest segment goes; its bytes are the cut. Names never repeat, so no file is reused while read. */
  private async rotate(): Promise<void> {
    if (this.previous) {
      await this.previous.handle.close();
      await rm(this.previous.path, { force: true });
    }
    this.previous = this.current;
    const path = `${this.file}.tail-${++this.segments}`;
    this.current = { path, handle: await open(path, 'w'), bytes: 0 };
  }

  /**
   * The log as it should be uploaded now. Without a tail it is the log file itself; otherwise a file
   * `{file}.upload` is composed from the head, the cut line and the kept tail.
   */
  snapshot(): Promise<LogSnapshot> {
    return this.serially(async () => {
      await this.openHead();
      this.snapshotBytes = this.written;
      if (!this.current) return { path: this.file, bytes: this.headBytes };
      const inTail = (this.previous?.bytes ?? 0) + this.current.bytes;
      const keptTail = Math.min(this.tailLimit, inTail);
      const cutBytes = this.written - this.headBytes - keptTail;
      const target = `${this.file}.upload`;
      const out = createWriteStream(target);
      const copy = async (path: string, start: number, end: number) => {
        if (end > start) await pipeline(createReadStream(path, { start, end: end - 1 }), out, { end: false });
      };
      await copy(this.file, 0, this.headBytes);
      let marker = '';
      if (cutBytes > 0) {
        marker = `\n[caas: ${cutBytes} bytes cut here. The log was ${this.written} bytes; it keeps the first ${this.headBytes} and the last ${keptTail} (blueprint log_limit_mb)]\n`;
        out.write(marker);
      }
      const fromPrevious = keptTail - this.current.bytes;
      if (fromPrevious > 0 && this.previous) await copy(this.previous.path, this.previous.bytes - fromPrevious, this.previous.bytes);
      await copy(this.current.path, 0, this.current.bytes);
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
      const bytes = this.headBytes + Buffer.byteLength(marker) + keptTail;
      return {
        path: target,
        bytes,
        ...(cutBytes > 0 ? { cut: { written_bytes: this.written, kept_bytes: this.headBytes + keptTail, cut_bytes: cutBytes } } : {}),
      };
    });
  }

  /** Closes the files (after the stream has finished); the folder they are in is the caller's to remove. */
  close(): Promise<void> {
    return this.serially(async () => {
      for (const handle of [this.head, this.previous?.handle, this.current?.handle]) await handle?.close().catch(() => {});
    });
  }
}
