import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import { generateSampleCatalog, importCatalog } from '../dispatcher/catalog.ts';
import { DispatchError } from '../dispatcher/dispatch-error.ts';
import { runCli } from './support/workspace.ts';

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-catalog-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const asset = (id: string, extra: Record<string, unknown> = {}) => ({
  _id: id,
  name: `ses-${id}`,
  location: `s3://bucket/ses-${id}`,
  ...extra,
});

async function catalogIds(home: string): Promise<string[]> {
  const db = await openDatabase('sqlite:', { home, readOnly: true });
  try {
    const ids: string[] = [];
    for await (const doc of db.findAssets({})) ids.push(String(doc._id));
    return ids;
  } finally {
    await db.close();
  }
}

describe('caas catalog import', () => {
  it('loads JSONL asset documents, keeping every field, and replaces a document with the same _id', async () => {
    const home = path.join(tmp, 'import');
    const file = path.join(tmp, 'assets.jsonl');
    await writeFile(file, `${JSON.stringify(asset('b', { subject: { subject_id: '1' } }))}\n\n${JSON.stringify(asset('a'))}\n`);
    expect(await importCatalog({ home, dbUrl: 'sqlite:', storeUrl: 'file:' }, file)).toBe(2);
    await writeFile(file, `${JSON.stringify(asset('b', { subject: { subject_id: '2' } }))}\n`);
    expect(await importCatalog({ home, dbUrl: 'sqlite:', storeUrl: 'file:' }, file)).toBe(1);
    const db = await openDatabase('sqlite:', { home, readOnly: true });
    const found = await db.getAssets(['a', 'b']);
    await db.close();
    expect(found.get('b')).toEqual(asset('b', { subject: { subject_id: '2' } }));
    expect([...found.keys()].sort()).toEqual(['a', 'b']);
  });

  it('imports nothing from a file with a bad line, and names the line', async () => {
    const home = path.join(tmp, 'bad-line');
    const file = path.join(tmp, 'bad.jsonl');
    await writeFile(file, `${JSON.stringify(asset('a'))}\n${JSON.stringify({ _id: 'b', name: 'b', location: 'http://x/' })}\n`);
    const error = await importCatalog({ home, dbUrl: 'sqlite:', storeUrl: 'file:' }, file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DispatchError);
    expect((error as Error).message).toBe(`${file}:2: location: an object URL of the asset folder (s3://bucket/key, file://...)`);
    await writeFile(file, `${JSON.stringify(asset('a'))}\n{"_id": "b",\n`);
    await expect(importCatalog({ home, dbUrl: 'sqlite:', storeUrl: 'file:' }, file)).rejects.toThrow(`${file}:2:13: invalid JSON`);
    expect(await readdir(tmp)).not.toContain('bad-line');
  });

  it('reads stdin with -', async () => {
    const home = path.join(tmp, 'stdin');
    const stdin = Readable.from([`${JSON.stringify(asset('x'))}\n${JSON.stringify(asset('y'))}\n`]);
    expect(await importCatalog({ home, dbUrl: 'sqlite:', storeUrl: 'file:' }, '-', stdin)).toBe(2);
    expect(await catalogIds(home)).toEqual(['x', 'y']);
  });

  it('prints the count from the CLI, and exits 2 naming the line of a bad document', async () => {
    const home = path.join(tmp, 'cli');
    const file = path.join(tmp, 'cli.jsonl');
    await writeFile(file, `${JSON.stringify(asset('a'))}\n`);
    expect(await runCli(['--home', home, 'catalog', 'import', file])).toMatchObject({ code: 0, stdout: 'imported 1 asset\n' });
    await writeFile(file, `${JSON.stringify({ name: 'no id', location: 's3://b/k' })}\n`);
    expect(await runCli(['--home', home, 'catalog', 'import', file])).toMatchObject({
      code: 2,
      stderr: `caas: ${file}:1: _id: Invalid input\n`,
    });
  });
});

describe('caas catalog generate-sample', () => {
  it('writes the sample assets to the store and imports them, deterministically', async () => {
    const home = path.join(tmp, 'sample');
    const backends = { home, dbUrl: 'sqlite:', storeUrl: 'file:' };
    const result = await generateSampleCatalog(backends, { subjects: ['1', '2', '3'], sessionsPerSubject: 2 });
    expect(result).toMatchObject({ count: 6, bucket: 'sample-data' });
    const ids = await catalogIds(home);
    expect(ids).toHaveLength(6);
    await generateSampleCatalog(backends, { subjects: ['1', '2', '3'], sessionsPerSubject: 2 });
    expect(await catalogIds(home)).toEqual(ids);
    expect((await readdir(path.join(home, 'buckets', 'sample-data'))).sort()).toHaveLength(6);
  });
});
