import { getText, type ObjectStore } from '../backends/storage/index.ts';
import type { JobFolder } from '../models/bucket-contract.ts';

/**
 * Reasons quote what users wrote (names, field names); a newline in there must not forge a line of
 * the certificate or of end.txt, whose second line clients read as the reason.
 */
export function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping control characters is the point
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** A line of certificate.txt as the watcher writes it, told apart from the agent's by "caas watcher:". */
export function certificateLine(line: string, at = new Date()): string {
  return `${at.toISOString()} caas watcher: ${oneLine(line)}\n`;
}

/**
 * Appends the watcher's lines to job folders' certificate.txt (only ever while no agent writes it).
 * The store has no append, so each line reads and rewrites the whole file: lines to one folder (the
 * workers of a dataset list write them concurrently) are chained so that none is lost.
 */
export class CertificateNotes {
  /** The last line queued per certificate. */
  private readonly queued = new Map<string, Promise<void>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly bucket: string,
  ) {}

  append(folder: Pick<JobFolder, 'certificate'>, line: string): Promise<void> {
    const entry = certificateLine(line);
    const key = folder.certificate;
    const append = async () => {
      const before = (await getText(this.store, this.bucket, key)) ?? '';
      await this.store.put(this.bucket, key, `${before}${entry}`);
    };
    const next = (this.queued.get(key) ?? Promise.resolve()).then(append, append);
    this.queued.set(key, next);
    const forget = () => {
      if (this.queued.get(key) === next) this.queued.delete(key);
    };
    next.then(forget, forget);
    return next;
  }
}
