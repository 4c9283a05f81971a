import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CaasError } from '../models/caas-error.ts';
import { type ParsedJson, parseJsonText } from '../models/untrusted-json.ts';

/** One job (a JSONL line, or a .json file of a folder) is at most this long: 8 MiB. */
export const MAX_JOB_BYTES = 8 * 1024 * 1024;
/** A JSON array of jobs is parsed whole, so it is at most this long: 64 MiB (JSONL streams, with no limit). */
export const MAX_ARRAY_BYTES = 64 * 1024 * 1024;

/** The job source itself cannot be read (missing file, unreadable folder): invalid input, exit 2. */
export class JobSourceError extends CaasError {}

/** One job as read, with where it came from (file:line) for error messages. */
export interface JobEntry {
  where: string;
  value?: unknown;
  /** Set when the text could not even be parsed as JSON (or was too long, or not UTF-8). */
  error?: string;
}

/**
 * Reads jobs from JSONL, a JSON array, one JSON object over several lines, a folder of job JSON
 * files, or "-" (stdin, any of the file forms). JSONL streams line by line, so a batch of any size
 * is never held as text.
 */
export async function* readJobEntries(source: string, stdin: Readable = process.stdin): AsyncIterable<JobEntry> {
  if (source === '-') {
    yield* readStream(stdin, '<stdin>');
    return;
  }
  const info = await stat(source).catch(() => undefined);
  if (!info)
    throw new JobSourceError(`${source}: no such file or folder (expected JSONL, a JSON array, a folder of .json files, or - for stdin)`);
  if (info.isDirectory()) {
    yield* readJobFolder(source);
    return;
  }
  yield* readStream(createReadStream(source), source);
}

/**
 * A folder's .json files in name order, then those of its subfolders, one level down: AIND's
 * dispatcher writes one folder per worker (0/, 1/, ..., 10/: in number order) of job files.
 */
async function* readJobFolder(folder: string): AsyncIterable<JobEntry> {
  const entries = await readdir(folder, { withFileTypes: true });
  const files = entries.filter((e) => e.name.endsWith('.json') && !e.isDirectory()).map((e) => e.name);
  for (const file of files.sort()) yield await readJobFile(path.join(folder, file));
  const inner = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  for (const sub of inner.sort(byNumberThenName)) {
    const subFiles = (await readdir(path.join(folder, sub), { withFileTypes: true })).filter(
      (e) => e.name.endsWith('.json') && !e.isDirectory(),
    );
    for (const file of subFiles.map((e) => e.name).sort()) yield await readJobFile(path.join(folder, sub, file));
  }
}

function byNumberThenName(a: string, b: string): number {
  const na = /^\d+$/.test(a) ? Number(a) : Number.NaN;
  const nb = /^\d+$/.test(b) ? Number(b) : Number.NaN;
  if (!Number.isNaN(na) && !Number.isNaN(nb) && na !== nb) return na - nb;
  if (Number.isNaN(na) !== Number.isNaN(nb)) return Number.isNaN(na) ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * JSONL, or a JSON array when line 1 opens one, or one job object over several lines when line 1
 * is only its "{" (a pretty-printed job file, as AIND's dispatcher writes them). Lines are split
 * on bytes rather than with readline, whose line strings hit V8's string limit (about 512 MiB): a
 * line over MAX_JOB_BYTES is skipped as it streams by, never held, and reported as invalid like
 * any other bad line. A one-line array followed by more lines is JSONL whose line 1 is invalid; an
 * array or an object spanning lines is the file.
 */
async function* readStream(stream: Readable, name: string): AsyncIterable<JobEntry> {
  let array: { parts: Buffer[]; bytes: number } | undefined;
  let object: { parts: Buffer[]; bytes: number } | undefined;
  let oneLineArray: JobEntry | undefined;
  /** Line 1 parsed, when it opens a JSON array: parsed whole, it is the file's one line; else the array goes on. */
  let first: ParsedJson | undefined;
  /** Line 1 is only "{": the file is one JSON object. */
  let objectOpens = false;
  /** Asked as line 1 ends, before it is yielded: whether the lines after it are more of an array (else JSONL). */
  const arrayGoesOn = (bytes: Buffer) => {
    const text = decodeUtf8(bytes);
    objectOpens = text?.trim() === '{';
    if (text === undefined || !text.trimStart().startsWith('[')) return false;
    first = parseJsonText(text);
    return !first.ok;
  };
  for await (const lines of splitLines(stream, arrayGoesOn)) {
    for (const line of lines) {
      if (array) {
        if (line.bytes === undefined || array.bytes + line.bytes.length + 1 > MAX_ARRAY_BYTES) {
          yield { where: name, error: arrayTooLong() };
          return;
        }
        array.parts.push(NEWLINE, line.bytes);
        array.bytes += line.bytes.length + 1;
        continue;
      }
      if (object) {
        if (line.bytes === undefined || object.bytes + line.bytes.length + 1 > MAX_JOB_BYTES) {
          yield { where: name, error: `one job object of more than ${MAX_JOB_BYTES} bytes (8 MiB)` };
          return;
        }
        object.parts.push(NEWLINE, line.bytes);
        object.bytes += line.bytes.length + 1;
        continue;
      }
      const where = `${name}:${line.n}`;
      if (line.n === 1 && objectOpens) {
        object = { parts: [line.bytes!], bytes: line.bytes!.length };
        continue;
      }
      if (line.n === 1 && first !== undefined) {
        if (first.ok) oneLineArray = { where: name, value: first.value };
        else array = { parts: [line.bytes!], bytes: line.bytes!.length };
        continue;
      }
      if (line.n === 1 && line.bytes === undefined && line.limit === MAX_ARRAY_BYTES) {
        yield { where: name, error: arrayTooLong() };
        return;
      }
      const text = line.bytes === undefined ? undefined : decodeUtf8(line.bytes);
      if (text?.trim() === '') continue;
      // Any other line, even one too long to read or not UTF-8, makes the file JSONL.
      if (oneLineArray) {
        yield {
          where: `${name}:1`,
          error:
            'a JSON array on line 1 followed by more lines: expected one job object per line (JSONL), or a file holding only a JSON array',
        };
        oneLineArray = undefined;
      }
      yield lineEntry(line, text, where);
    }
  }
  if (oneLineArray) yield* arrayEntries(oneLineArray.value, name);
  if (array) yield* spanningArrayEntries(array.parts, name);
  if (object) {
    const text = decodeUtf8(Buffer.concat(object.parts));
    yield text === undefined ? { where: name, error: NOT_UTF8 } : parseOne(text, name);
  }
}

/** One JSONL line as a job entry: parsed, or invalid with what is wrong with it. */
function lineEntry(line: RawLine, text: string | undefined, where: string): JobEntry {
  if (line.bytes === undefined) return { where, error: tooLong(line.length) };
  if (text === undefined) return { where, error: NOT_UTF8 };
  if (line.bytes.length > MAX_JOB_BYTES) return { where, error: tooLong(line.bytes.length) };
  return parseOne(text, where);
}

/** The entries of a file that is one JSON array over several lines. */
function* spanningArrayEntries(parts: Buffer[], name: string): Iterable<JobEntry> {
  const text = decodeUtf8(Buffer.concat(parts));
  if (text === undefined) {
    yield { where: name, error: NOT_UTF8 };
    return;
  }
  const parsed = parseJsonText(text);
  if (parsed.ok) yield* arrayEntries(parsed.value, name);
  else yield { where: name, error: parsed.reason };
}

const NOT_UTF8 = 'not UTF-8 text: expected JSON encoded as UTF-8';

function tooLong(bytes: number): string {
  return `the line is ${bytes} bytes long: expected one job of at most ${MAX_JOB_BYTES} bytes (8 MiB) per line`;
}

function arrayTooLong(): string {
  return `a JSON array of jobs longer than ${MAX_ARRAY_BYTES} bytes (64 MiB): split it, or write JSONL (one job per line), which streams`;
}

function* arrayEntries(values: unknown, name: string): Iterable<JobEntry> {
  if (!Array.isArray(values)) {
    yield { where: name, error: 'expected a JSON array of jobs' };
    return;
  }
  for (const [i, value] of values.entries()) yield { where: `${name}[${i}]`, value };
}

/** One job file of a folder; its size is checked before anything is read. */
async function readJobFile(where: string): Promise<JobEntry> {
  const file = await open(where, 'r');
  try {
    const { size } = await file.stat();
    if (size > MAX_JOB_BYTES)
      return { where, error: `the file is ${size} bytes long: expected one job of at most ${MAX_JOB_BYTES} bytes (8 MiB)` };
    const text = decodeUtf8(await file.readFile());
    if (text === undefined) return { where, error: 'not UTF-8 text: expected JSON encoded as UTF-8' };
    return parseOne(text, where);
  } finally {
    await file.close();
  }
}

function parseOne(text: string, where: string): JobEntry {
  const parsed = parseJsonText(text);
  return parsed.ok ? { where, value: parsed.value } : { where, error: parsed.reason };
}

// fatal: a byte that is not UTF-8 makes the job invalid instead of quietly becoming U+FFFD in a
// name or URL. The decoder drops a leading byte order mark itself.
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

const NEWLINE = Buffer.from('\n');
const OPEN_BRACKET = 0x5b;

/** A line's bytes (without its "\n" or "\r\n"), or only its length and limit when it was over that limit. */
interface RawLine {
  n: number;
  bytes?: Buffer;
  length: number;
  limit?: number;
}

/**
 * Splits a byte stream into lines, a chunk's worth at a time (one await per chunk, not per line).
 * A line holds at most MAX_JOB_BYTES. Line 1 holds up to MAX_ARRAY_BYTES when it opens a JSON
 * array, and so do the lines after it when `arrayGoesOn(line 1)` says that array is not closed
 * there (then the caller bounds the array as a whole); otherwise the file is JSONL and every later
 * line is held to MAX_JOB_BYTES on its own. Past its limit the rest of a line is counted as it
 * streams by, not kept.
 */
async function* splitLines(stream: Readable, arrayGoesOn: (line1: Buffer) => boolean): AsyncIterable<RawLine[]> {
  let n = 1;
  let pieces: Buffer[] = [];
  let held = 0;
  let skipped: number | undefined;
  let limit = MAX_JOB_BYTES;
  /** The limit of every line after line 1, decided when line 1 ends. */
  let laterLimit = MAX_JOB_BYTES;
  const take = (piece: Buffer) => {
    if (skipped !== undefined) {
      skipped += piece.length;
      return;
    }
    pieces.push(piece);
    held += piece.length;
    if (held <= MAX_JOB_BYTES) return;
    if (n === 1 && firstNonBlank(pieces) === OPEN_BRACKET) limit = MAX_ARRAY_BYTES;
    if (held > limit) {
      skipped = held;
      pieces = [];
      held = 0;
    }
  };
  const finish = (): RawLine => {
    let line: RawLine;
    if (skipped !== undefined) line = { n, length: skipped, limit };
    else {
      let bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, held);
      if (bytes.at(-1) === CR) bytes = bytes.subarray(0, -1);
      line = { n, bytes, length: bytes.length };
      if (n === 1 && arrayGoesOn(bytes)) laterLimit = MAX_ARRAY_BYTES;
    }
    if (n === 1) limit = laterLimit;
    n++;
    pieces = [];
    held = 0;
    skipped = undefined;
    return line;
  };
  for await (const data of stream) {
    const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
    const lines: RawLine[] = [];
    let at = 0;
    for (let newline = chunk.indexOf(LF, at); newline !== -1; newline = chunk.indexOf(LF, at)) {
      take(chunk.subarray(at, newline));
      lines.push(finish());
      at = newline + 1;
    }
    if (at < chunk.length) take(chunk.subarray(at));
    if (lines.length > 0) yield lines;
  }
  if (held > 0 || skipped !== undefined) yield [finish()];
}

const LF = 0x0a;
const CR = 0x0d;
const BLANK = new Set([0x20, 0x09, CR, 0xef, 0xbb, 0xbf]);

function firstNonBlank(pieces: Buffer[]): number | undefined {
  for (const piece of pieces) for (const byte of piece) if (!BLANK.has(byte)) return byte;
  return undefined;
}
