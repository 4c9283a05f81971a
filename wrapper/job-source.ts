import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** The job source itself cannot be read (missing file, unreadable folder): invalid input, exit 2. */
export class JobSourceError extends Error {}

/** One job as read, with where it came from (file:line) for error messages. */
export interface JobEntry {
  where: string;
  value?: unknown;
  /** Set when the text could not even be parsed as JSON. */
  error?: string;
}

/**
 * Reads jobs from JSONL, a JSON array, a folder of job JSON files, or "-" (stdin, JSONL or a JSON
 * array). JSONL streams line by line, so a batch of any size is never held as text.
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
    const files = (await readdir(source)).filter((f) => f.endsWith('.json')).sort();
    for (const file of files) {
      const where = path.join(source, file);
      yield parseOne(await readFile(where, 'utf8'), where);
    }
    return;
  }
  yield* readStream(createReadStream(source), source);
}

async function* readStream(stream: Readable, name: string): AsyncIterable<JobEntry> {
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  let arrayText: string[] | undefined;
  for await (const line of lines) {
    lineNo++;
    if (arrayText) {
      arrayText.push(line);
      continue;
    }
    const trimmed = line.trim();
    if (trimmed === '') continue;
    if (lineNo === 1 && trimmed.startsWith('[')) {
      arrayText = [line];
      continue;
    }
    yield parseOne(line, `${name}:${lineNo}`);
  }
  if (arrayText) yield* parseArray(arrayText.join('\n'), name);
}

function* parseArray(text: string, name: string): Iterable<JobEntry> {
  let values: unknown;
  try {
    values = JSON.parse(text);
  } catch (error) {
    yield { where: name, error: `invalid JSON: ${(error as Error).message}` };
    return;
  }
  if (!Array.isArray(values)) {
    yield { where: name, error: 'expected a JSON array of jobs' };
    return;
  }
  for (const [i, value] of values.entries()) yield { where: `${name}[${i}]`, value };
}

function parseOne(text: string, where: string): JobEntry {
  try {
    return { where, value: JSON.parse(text) };
  } catch (error) {
    return { where, error: `invalid JSON: ${(error as Error).message}` };
  }
}
