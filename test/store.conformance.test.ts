import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ClaimRequest, type Database, openDatabase, registerDatabase, type SlotRequest } from '../backends/db/index.ts';
import { databaseName } from '../backends/db/mongo.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { queuedJob } from '../fixtures/queued-jobs.ts';
import { concluded, finishedRecord, owner, recordDraft } from '../fixtures/records.ts';
import { GroupSlot } from '../models/group-slot.ts';
import { QueuedJob } from '../models/queued-job.ts';
import { type Attempt, MetadataRecord, type Owner } from '../models/record.ts';
import { TOY_PREFIX } from './support/toy-database.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workerScript = path.join(repoRoot, 'test/support/claim-worker.ts');
const slotWorkerScript = path.join(repoRoot, 'test/support/slot-worker.ts');
const queueWorkerScript = path.join(repoRoot, 'test/support/queue-worker.ts');
const LEASE = 60_000;

/** A store under test: every call of freshUrl names a database nobody has used yet. */
interface Backend {
  title: string;
  skip?: string;
  home: string;
  freshUrl(): string;
  /** A module that registers the URL's kind, for the racing runners' processes too. */
  setup?: string;
  /** Whether opening `url` left anything behind (a file, a collection). */
  created(url: string): Promise<boolean>;
  cleanup(): Promise<void>;
}

async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function request(seed: string | number, who: Owner, extra: Partial<ClaimRequest> = {}): ClaimRequest {
  return { draft: recordDraft({ seed }), owner: who, leaseMs: LEASE, ...extra };
}

interface Worker {
  ready: Promise<void>;
  won: Promise<string[]>;
  go(): void;
}

/** A runner in its own process; it claims only after go(), so all of them start together. */
function startWorker(url: string, home: string, count: number, run: string, setup?: string): Worker {
  return startScript([workerScript, url, home, String(count), run, ...(setup ? [setup] : [])], run);
}

/** A runner asking for slots of group "lab" `tries` times, once go() is called; `won` is the slot ids it took. */
function startSlotWorker(url: string, home: string, tries: number, limit: number, run: string, setup?: string): Worker {
  return startScript([slotWorkerScript, url, home, String(tries), String(limit), run, ...(setup ? [setup] : [])], run);
}

function startScript(args: string[], run: string): Worker {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: repoRoot });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.startsWith('ready\n')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`worker ${run} exited (${code}) before it was ready: ${stderr}`)));
  });
  const won = new Promise<string[]>((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`worker ${run} exited with ${code}: ${stderr}`));
      resolve(JSON.parse(stdout.slice('ready\n'.length)) as string[]);
    });
  });
  return { ready, won, go: () => child.stdin.end('go\n') };
}

function conformance(backend: Backend): void {
  describe.skipIf(backend.skip !== undefined)(backend.title, () => {
    let db: Database;
    let url: string;
    const alice = owner('run-alice');
    const bob = owner('run-bob');

    beforeEach(async () => {
      url = backend.freshUrl();
      db = await openDatabase(url, { home: backend.home });
    });
    afterEach(async () => {
      await db?.close();
    });
    afterAll(() => backend.cleanup());

    it('lookup of many ids returns exactly the stored ones', async () => {
      const records = Array.from({ length: 3000 }, (_, i) => finishedRecord({ seed: `stored-${i}` }));
      expect(await db.importRecords(records)).toBe(3000);
      const stored = records.map((r) => r._id);
      const unknown = Array.from({ length: 2000 }, (_, i) => recordDraft({ seed: `absent-${i}` })._id);
      const asked = [...stored, ...unknown].sort();

      const found = await db.lookup(asked);

      expect(found.size).toBe(3000);
      expect([...found.keys()].sort()).toEqual(stored.sort());
      for (const [id, record] of found) {
        expect(record._id).toBe(id);
        expect(record.status).toBe('succeeded');
      }
    });

    it('claim on a new identity wins attempt 1 with a lease', async () => {
      const req = request('new', alice);
      const before = Date.now();

      const outcome = await db.claim(req.draft._id, req);

      expect(outcome).toMatchObject({ won: true, attempt: 1 });
      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record).toEqual(outcome.record);
      expect(record.status).toBe('running');
      expect(record.lease?.owner).toEqual(alice);
      expect(Date.parse(record.lease?.expires ?? '')).toBeGreaterThanOrEqual(before + LEASE);
      expect(record.attempts).toMatchObject([{ n: 1, status: 'running', owner: alice, ended: null }]);
    });

    it('a second claim while the lease is live loses with state running', async () => {
      const req = request('contended', alice);
      await db.claim(req.draft._id, req);

      const outcome = await db.claim(req.draft._id, { ...req, owner: bob });

      expect(outcome).toMatchObject({ won: false, state: 'running' });
      expect(outcome.record.lease?.owner).toEqual(alice);
      expect((await db.get(req.draft._id))?.attempts).toHaveLength(1);
    });

    it('concurrent claims of one identity: exactly one wins, new or taken over', async () => {
      const fresh = request('stampede', alice);
      const first = await Promise.all(
        Array.from({ length: 8 }, (_, i) => db.claim(fresh.draft._id, { ...fresh, owner: owner(`run-${i}`) })),
      );
      expect(first.filter((o) => o.won)).toHaveLength(1);
      expect(first.filter((o) => !o.won).every((o) => !o.won && o.state === 'running')).toBe(true);

      const winner = first.find((o) => o.won)?.record.lease?.owner as Owner;
      await db.finish(fresh.draft._id, winner, concluded('failed'));
      const again = await Promise.all(
        Array.from({ length: 8 }, (_, i) => db.claim(fresh.draft._id, { ...fresh, owner: owner(`retry-${i}`) })),
      );
      expect(again.filter((o) => o.won)).toHaveLength(1);
      expect(again.filter((o) => !o.won).every((o) => !o.won && o.state === 'running')).toBe(true);
      expect((await db.get(fresh.draft._id))?.attempts).toHaveLength(2);
    });

    it('after finish(succeeded) a claim loses with state succeeded', async () => {
      const req = request('done', alice);
      await db.claim(req.draft._id, req);
      await db.finish(req.draft._id, alice, concluded('succeeded'));

      const outcome = await db.claim(req.draft._id, { ...req, owner: bob });

      expect(outcome).toMatchObject({ won: false, state: 'succeeded' });
      expect(outcome.record.status).toBe('succeeded');
    });

    it('force with a reason wins attempt 2, keeps attempt 1 with its results in history and records force_reason', async () => {
      const req = request('forced', alice);
      await db.claim(req.draft._id, req);
      await db.finish(req.draft._id, alice, concluded('succeeded', { results: 's3://caas-results/test/results/job__1/process_results/' }));

      const outcome = await db.claim(req.draft._id, { ...req, owner: bob, force: 'new sorter release' });

      expect(outcome).toMatchObject({ won: true, attempt: 2 });
      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record.status).toBe('running');
      expect(record.lease?.owner).toEqual(bob);
      expect(record.attempts).toMatchObject([
        { n: 1, status: 'succeeded', owner: alice, results: 's3://caas-results/test/results/job__1/process_results/' },
        { n: 2, status: 'running', owner: bob, force_reason: 'new sorter release' },
      ]);
      expect(record.attempts[0]).not.toHaveProperty('force_reason');
    });

    it('after finish(failed) a claim wins attempt 2', async () => {
      const req = request('failed', alice);
      await db.claim(req.draft._id, req);
      await db.finish(req.draft._id, alice, concluded('failed', { reason: 'exit code 3', exitCode: 3 }));

      const outcome = await db.claim(req.draft._id, { ...req, owner: bob });

      expect(outcome).toMatchObject({ won: true, attempt: 2 });
      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record.attempts).toMatchObject([
        { n: 1, status: 'failed', reason: 'exit code 3', exit_code: 3 },
        { n: 2, status: 'running', owner: bob, ended: null },
      ]);
    });

    it('an expired lease is taken over and the old attempt is closed as failed with a lease-expired reason', async () => {
      const req = request('abandoned', alice);
      await db.claim(req.draft._id, req);
      const later = new Date(Date.now() + 2 * LEASE);

      const outcome = await db.claim(req.draft._id, { ...req, owner: bob, now: later });

      expect(outcome).toMatchObject({ won: true, attempt: 2 });
      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record.lease?.owner).toEqual(bob);
      expect(record.attempts[0]).toMatchObject({ n: 1, status: 'failed', owner: alice, ended: later.toISOString() });
      expect(record.attempts[0]?.reason).toMatch(/lease expired/);
      // Claimed, not yet running: the new owner first decides whether attempt 1 is alive (adopt) or dead.
      expect(record.attempts[1]).toMatchObject({ n: 2, status: 'claimed', owner: bob });
      // The runner that stopped renewing has lost the record for good.
      expect(await db.renew(req.draft._id, alice, LEASE)).toBe(false);
      expect(await db.finish(req.draft._id, alice, concluded('succeeded'))).toBe(false);
    });

    it('a claimed attempt whose runner died before deciding is dropped by the next takeover: it never ran', async () => {
      const req = request('decider-died', alice);
      await db.claim(req.draft._id, req);
      await db.claim(req.draft._id, { ...req, owner: bob, now: new Date(Date.now() + 2 * LEASE) });
      const carol = owner('carol');

      const outcome = await db.claim(req.draft._id, { ...req, owner: carol, now: new Date(Date.now() + 4 * LEASE) });

      expect(outcome).toMatchObject({ won: true, attempt: 2 });
      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record.attempts.map((a) => [a.n, a.status, a.owner.run])).toEqual([
        [1, 'failed', alice.run],
        [2, 'claimed', carol.run],
      ]);
      expect(record.attempts[0]?.reason).toMatch(/lease expired/);
    });

    it('a failure recorded after a runner planned is not retried by it: the claim says failed, the next plan retries', async () => {
      const req = request('failed-meanwhile', alice);
      const plannedAt = new Date();
      await db.claim(req.draft._id, req);
      await db.finish(req.draft._id, alice, concluded('failed', { reason: 'exit code 3', exitCode: 3 }));

      const sameWave = await db.claim(req.draft._id, { ...req, owner: bob, plannedAt: new Date(plannedAt.getTime() - 1) });
      expect(sameWave).toMatchObject({ won: false, state: 'failed' });
      expect((await db.get(req.draft._id))?.attempts).toHaveLength(1);

      const nextRun = await db.claim(req.draft._id, { ...req, owner: bob, plannedAt: new Date(Date.now() + 1000) });
      expect(nextRun).toMatchObject({ won: true, attempt: 2 });
    });

    it('update rewrites a held record and keeps its lease; nobody else can update it', async () => {
      const req = request('amended', alice);
      await db.claim(req.draft._id, req);
      const before = MetadataRecord.parse(await db.get(req.draft._id));

      expect(await db.update(req.draft._id, bob, (r) => ({ ...r, reason: 'impostor' }))).toBe(false);
      expect(await db.update(req.draft._id, alice, (r) => ({ ...r, reason: 'adopting' }))).toBe(true);

      const after = MetadataRecord.parse(await db.get(req.draft._id));
      expect(after.reason).toBe('adopting');
      expect(after.lease).toEqual(before.lease);
      expect(after.status).toBe('running');
      expect(await db.renew(req.draft._id, alice, LEASE)).toBe(true);
      expect(await db.finish(req.draft._id, alice, concluded('succeeded'))).toBe(true);
    });

    it('renew by the owner extends the lease', async () => {
      const req = request('renewed', alice);
      await db.claim(req.draft._id, { ...req, leaseMs: 1000 });
      const before = Date.parse((await db.get(req.draft._id))?.lease?.expires ?? '');

      expect(await db.renew(req.draft._id, alice, LEASE)).toBe(true);

      const after = await db.get(req.draft._id);
      expect(Date.parse(after?.lease?.expires ?? '')).toBeGreaterThan(before + LEASE / 2);
      expect(after?.lease?.owner).toEqual(alice);
    });

    it('renew and finish by a non-owner return false and change nothing', async () => {
      const req = request('guarded', alice);
      await db.claim(req.draft._id, req);
      const before = await db.get(req.draft._id);
      const impostors = [bob, { ...alice, pid: alice.pid + 1 }, { ...alice, host: 'other-host' }];

      for (const impostor of impostors) {
        expect(await db.renew(req.draft._id, impostor, 10 * LEASE)).toBe(false);
        expect(await db.finish(req.draft._id, impostor, concluded('succeeded'))).toBe(false);
      }
      expect(await db.renew('f'.repeat(64), alice, LEASE)).toBe(false);

      expect(await db.get(req.draft._id)).toEqual(before);
    });

    it('finish drops the lease and stores the outcome', async () => {
      const req = request('finished', alice);
      await db.claim(req.draft._id, req);

      expect(await db.finish(req.draft._id, alice, concluded('succeeded', { results: 's3://r/process_results/' }))).toBe(true);

      const record = MetadataRecord.parse(await db.get(req.draft._id));
      expect(record.lease).toBeNull();
      expect(record.status).toBe('succeeded');
      expect(record.attempts).toMatchObject([{ n: 1, status: 'succeeded', results: 's3://r/process_results/', exit_code: 0 }]);
      // Finished records are no longer held by anyone.
      expect(await db.renew(req.draft._id, alice, LEASE)).toBe(false);
      expect(await db.finish(req.draft._id, alice, concluded('failed'))).toBe(false);
    });

    it('find passes MongoDB filters: nested field, $in, $gte on created, sort desc + limit', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const draft = recordDraft({
          seed: `find-${i}`,
          analysis: i % 2 === 0 ? { name: 'unit-filter', version: '1.0.0' } : { name: 'mock-wait', version: '0.1.0' },
          parameters: { isi_violations_cutoff: i / 10 },
          created: `2024-01-0${i + 1}T00:00:00.000Z`,
        });
        await db.claim(draft._id, { draft, owner: alice, leaseMs: LEASE });
        if (i < 4) await db.finish(draft._id, alice, concluded('succeeded'));
        ids.push(draft._id);
      }
      const idsOf = async (filter: Record<string, unknown>, options?: Parameters<Database['find']>[1]) =>
        (await all(db.find(filter, options))).map((r) => r._id);

      expect(new Set(await idsOf({ 'parameters.isi_violations_cutoff': { $gte: 0.3 } }))).toEqual(new Set(ids.slice(3)));
      expect(new Set(await idsOf({ 'parameters.isi_violations_cutoff': 0.2 }))).toEqual(new Set([ids[2]]));
      expect(new Set(await idsOf({ 'analysis.name': { $in: ['mock-wait'] } }))).toEqual(new Set([ids[1], ids[3], ids[5]]));
      expect(new Set(await idsOf({ created: { $gte: '2024-01-05' } }))).toEqual(new Set([ids[4], ids[5]]));
      expect(await idsOf({ status: 'succeeded' }, { sort: { created: -1 }, limit: 2 })).toEqual([ids[3], ids[2]]);
      expect(await idsOf({ status: { $in: ['running'] }, 'analysis.name': 'unit-filter' })).toEqual([ids[4]]);
      expect(await idsOf({}, { limit: 0 })).toEqual([]);
      expect(await idsOf({ 'analysis.name': 'nothing-like-this' })).toEqual([]);
    });

    it('idsWithPrefix returns the identities with that prefix in order, at most limit', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const req = request(`prefix-${i}`, alice);
        await db.claim(req.draft._id, req);
        ids.push(req.draft._id);
      }
      const prefix = (ids[0] as string).slice(0, 1);
      const expected = ids.filter((id) => id.startsWith(prefix)).sort();

      expect(await db.idsWithPrefix(prefix, 100)).toEqual(expected);
      expect(await db.idsWithPrefix(prefix, 1)).toEqual(expected.slice(0, 1));
      expect(await db.idsWithPrefix(ids[0] as string, 10)).toEqual([ids[0]]);
      expect(await db.idsWithPrefix('zz', 10)).toEqual([]);
    });

    it('importRecords inserts new identities as they are and never overwrites a recorded one', async () => {
      const live = request('live', alice);
      expect((await db.claim(live.draft._id, live)).won).toBe(true);
      const before = await db.get(live.draft._id);
      const imported = [finishedRecord({ seed: 'a' }), finishedRecord({ seed: 'b', status: 'failed' })];
      const clash = finishedRecord({ seed: 'live' });
      expect(clash._id).toBe(live.draft._id);

      expect(await db.importRecords([...imported, clash])).toBe(2);
      expect(await db.importRecords(imported)).toBe(0);

      expect(await db.get(live.draft._id)).toEqual(before);
      for (const record of imported) expect(await db.get(record._id)).toEqual(record);
      const verdicts = await db.lookup(imported.map((r) => r._id));
      expect([...verdicts.values()].map((r) => r.status).sort()).toEqual(['failed', 'succeeded']);
    });

    it('importAssets upserts: importing the same _id twice keeps one document with the newer content', async () => {
      const asset = { _id: 'asset-1', name: 'ecephys_1', location: 's3://aind-open-data/ecephys_1', subject: { subject_id: '111' } };
      expect(await db.importAssets([asset])).toBe(1);

      expect(await db.importAssets([{ ...asset, name: 'ecephys_1_v2' }])).toBe(1);

      const docs = await all(db.findAssets({}));
      expect(docs).toEqual([{ ...asset, name: 'ecephys_1_v2' }]);
    });

    it('findAssets with a filter on subject.subject_id streams in _id order; getAssets returns by id', async () => {
      async function* catalog() {
        // Out of _id order on purpose, and across more than one import batch.
        for (let i = 2499; i >= 0; i--) {
          const id = `asset-${String(i).padStart(5, '0')}`;
          yield {
            _id: id,
            name: `session_${i}`,
            location: `s3://aind-open-data/${id}`,
            subject: { subject_id: i % 2 === 0 ? '111' : '222' },
          };
        }
      }
      expect(await db.importAssets(catalog())).toBe(2500);

      const even = (await all(db.findAssets({ 'subject.subject_id': '111' }))).map((a) => a._id);

      expect(even).toHaveLength(1250);
      expect(even).toEqual([...even].sort());
      expect(even[0]).toBe('asset-00000');
      const limited = (await all(db.findAssets({ 'subject.subject_id': '222' }, { limit: 3 }))).map((a) => a._id);
      expect(limited).toEqual(['asset-00001', 'asset-00003', 'asset-00005']);
      // A consumer may stop early; the store stays usable.
      for await (const first of db.findAssets({})) {
        expect(first._id).toBe('asset-00000');
        break;
      }
      const got = await db.getAssets(['asset-00007', 'asset-00010', 'no-such-asset']);
      expect([...got.keys()].sort()).toEqual(['asset-00007', 'asset-00010']);
      expect(got.get('asset-00007')).toMatchObject({ name: 'session_7', subject: { subject_id: '222' } });
    });

    it('an unknown query operator rejects with an error naming the operator', async () => {
      const req = request('operator', alice);
      await db.claim(req.draft._id, req);
      await db.importAssets([{ _id: 'asset-1', name: 'a' }]);

      await expect(all(db.find({ a: { $bogus: 1 } }))).rejects.toThrow(/\$bogus/);
      await expect(all(db.findAssets({ a: { $bogus: 1 } }))).rejects.toThrow(/\$bogus/);
    });

    it('a read-only open of a missing database creates nothing and reads as empty', async () => {
      const missing = backend.freshUrl();
      const reader = await openDatabase(missing, { home: backend.home, readOnly: true });
      try {
        const id = recordDraft({ seed: 'never' })._id;
        expect((await reader.lookup([id])).size).toBe(0);
        expect(await reader.get(id)).toBeUndefined();
        expect(await all(reader.find({}))).toEqual([]);
        expect(await reader.idsWithPrefix('', 10)).toEqual([]);
        expect(await all(reader.findAssets({}))).toEqual([]);
      } finally {
        await reader.close();
      }
      expect(await backend.created(missing)).toBe(false);
    });

    it('claims are atomic across processes: 4 runners racing for 50 identities win each exactly once', async () => {
      await db.close();
      const workers = Array.from({ length: 4 }, (_, i) => startWorker(url, backend.home, 50, `racer-${i}`, backend.setup));
      await Promise.all(workers.map((w) => w.ready));
      for (const w of workers) w.go();

      const wins = await Promise.all(workers.map((w) => w.won));

      const allWins = wins.flat();
      const expected = Array.from({ length: 50 }, (_, i) => recordDraft({ seed: `race-${i}` })._id);
      expect(allWins).toHaveLength(50);
      expect(new Set(allWins)).toEqual(new Set(expected));
      db = await openDatabase(url, { home: backend.home });
      const records = await db.lookup(expected);
      expect([...records.values()].every((r) => r.attempts.length === 1 && r.status === 'running')).toBe(true);
    });

    describe('the service queue (caas serve)', () => {
      it('a queued job is taken once, oldest first; a second take finds the next; none left is undefined', async () => {
        const [older, newer] = [queuedJob(1), queuedJob(2)];
        expect(await db.queue.enqueue(newer)).toEqual({ accepted: true, entry: newer });
        expect((await db.queue.enqueue(older)).accepted).toBe(true);

        const first = await db.queue.take(alice, LEASE);
        const second = await db.queue.take(bob, LEASE);

        expect(first?._id).toBe(older._id);
        expect(QueuedJob.parse(first)).toMatchObject({ state: 'taken', tries: 1, taken: { owner: alice } });
        expect(second?._id).toBe(newer._id);
        expect(await db.queue.take(alice, LEASE)).toBeUndefined();
      });

      it('queueing a job again while it waits or runs changes nothing; once done it is queued again', async () => {
        const job = queuedJob(3);
        await db.queue.enqueue(job);
        expect(await db.queue.enqueue({ ...job, where: 'again' })).toEqual({ accepted: false, entry: job });
        await db.queue.take(alice, LEASE);
        expect((await db.queue.enqueue(job)).entry.state).toBe('taken');

        expect(await db.queue.settle(job._id, alice, { state: 'done', outcome: 'succeeded', reason: 'ok' })).toBe(true);
        expect(await db.queue.queued(job._id)).toMatchObject({ state: 'done', outcome: 'succeeded', taken: null });
        const again = await db.queue.enqueue({ ...job, where: 'later' });
        expect(again.accepted).toBe(true);
        expect(again.entry).toMatchObject({ state: 'queued', where: 'later', tries: 1 });
      });

      it('only the taker renews or settles; a lapsed lease is taken over and the old taker can do neither', async () => {
        const job = queuedJob(4);
        await db.queue.enqueue(job);
        const now = new Date();
        await db.queue.take(alice, 1000, new Date(now.getTime() - 5000));
        expect(await db.queue.renewTaken(job._id, bob, LEASE)).toBeUndefined();
        expect(await db.queue.settle(job._id, bob, { state: 'done', outcome: 'x', reason: 'x' })).toBe(false);

        const taken = await db.queue.take(bob, LEASE, now);

        expect(taken).toMatchObject({ _id: job._id, tries: 2, taken: { owner: bob } });
        expect(await db.queue.renewTaken(job._id, alice, LEASE)).toBeUndefined();
        expect(await db.queue.settle(job._id, alice, { state: 'done', outcome: 'x', reason: 'x' })).toBe(false);
        expect((await db.queue.renewTaken(job._id, bob, LEASE))?.taken?.owner).toEqual(bob);
      });

      it('a job put back with not_before waits until then', async () => {
        const job = queuedJob(5);
        await db.queue.enqueue(job);
        await db.queue.take(alice, LEASE);
        const later = new Date(Date.now() + 60_000);
        await db.queue.settle(job._id, alice, { state: 'queued', outcome: 'running', reason: 'running elsewhere', notBefore: later });
        expect(await db.queue.take(bob, LEASE)).toBeUndefined();
        expect((await db.queue.take(bob, LEASE, new Date(later.getTime() + 1)))?._id).toBe(job._id);
      });

      it('cancel: a queued job is cancelled and never taken; a taken one is marked for its taker; a done one is left', async () => {
        const [waiting, running, done] = [queuedJob(6), queuedJob(7), queuedJob(8)];
        await db.queue.enqueue(done);
        await db.queue.take(bob, LEASE);
        await db.queue.settle(done._id, bob, { state: 'done', outcome: 'succeeded', reason: 'ok' });
        await db.queue.enqueue(running);
        await db.queue.take(alice, LEASE);
        await db.queue.enqueue(waiting);

        expect((await db.queue.cancel(waiting._id, 'not needed'))?.state).toBe('cancelled');
        expect(await db.queue.cancel(running._id, 'stop it')).toMatchObject({ state: 'taken', cancel: { reason: 'stop it' } });
        expect(await db.queue.cancel(done._id, 'too late')).toBeUndefined();

        expect((await db.queue.renewTaken(running._id, alice, LEASE))?.cancel?.reason).toBe('stop it');
        expect(await db.queue.settle(running._id, alice, { state: 'cancelled', outcome: 'failed', reason: 'cancelled' })).toBe(true);
        expect(await db.queue.cancel(running._id, 'again')).toBeUndefined();
        expect(await db.queue.take(bob, LEASE)).toBeUndefined();
        expect((await db.queue.queued(waiting._id))?.state).toBe('cancelled');
      });

      it('listQueued is newest first and per group; countWaiting counts queued and taken of one group', async () => {
        await db.queue.enqueue(queuedJob(9));
        await db.queue.enqueue(queuedJob(10));
        await db.queue.enqueue(queuedJob(11, { group: 'other' }));
        await db.queue.take(alice, LEASE);
        expect((await db.queue.listQueued({ limit: 10 })).map((j) => j._id)).toEqual([
          queuedJob(11)._id,
          queuedJob(10)._id,
          queuedJob(9)._id,
        ]);
        expect((await db.queue.listQueued({ group: 'lab', limit: 1 })).map((j) => j._id)).toEqual([queuedJob(10)._id]);
        expect(await db.queue.countWaiting('mock-wait', 'lab')).toBe(2);
        expect(await db.queue.countWaiting('mock-wait', 'other')).toBe(1);
        expect(await db.queue.countWaiting('unit-filter', 'lab')).toBe(0);
      });

      it('a read-only open of a missing database has an empty queue', async () => {
        const reader = await openDatabase(backend.freshUrl(), { home: backend.home, readOnly: true });
        try {
          expect(await reader.queue.queued(queuedJob(1)._id)).toBeUndefined();
          expect(await reader.queue.listQueued({ limit: 5 })).toEqual([]);
          expect(await reader.queue.countWaiting('mock-wait', 'lab')).toBe(0);
        } finally {
          await reader.close();
        }
      });

      it('taking is atomic across processes: 4 servers taking from 40 queued jobs take each exactly once', async () => {
        const jobs = Array.from({ length: 40 }, (_, i) => queuedJob(100 + i));
        for (const job of jobs) await db.queue.enqueue(job);
        await db.close();
        const workers = Array.from({ length: 4 }, (_, i) =>
          startScript([queueWorkerScript, url, backend.home, `server-${i}`, ...(backend.setup ? [backend.setup] : [])], `server-${i}`),
        );
        await Promise.all(workers.map((w) => w.ready));
        for (const w of workers) w.go();

        const took = (await Promise.all(workers.map((w) => w.won))).flat();

        expect(took).toHaveLength(40);
        expect(new Set(took)).toEqual(new Set(jobs.map((j) => j._id)));
        db = await openDatabase(url, { home: backend.home });
        expect((await db.queue.listQueued({ limit: 100 })).every((j) => j.state === 'taken' && j.tries === 1)).toBe(true);
      });
    });

    describe('user group slots (instance_limit and budget)', () => {
      const carol = owner('run-carol');
      const slotRequest = (who: Owner, extra: Partial<SlotRequest> = {}): SlotRequest => ({
        analysis: 'mock-wait',
        group: 'lab',
        limit: 2,
        identity: recordDraft({ seed: `slot-${who.run}` })._id,
        owner: who,
        leaseMs: LEASE,
        worstUsd: 0.17,
        instanceType: 't3.micro',
        ...extra,
      });

      it('a group with an instance_limit has that many slots, taken lowest number first; then none, while other groups keep theirs', async () => {
        const first = await db.takeSlot(slotRequest(alice));
        const second = await db.takeSlot(slotRequest(bob));
        const third = await db.takeSlot(slotRequest(carol));

        expect(GroupSlot.parse(first)).toMatchObject({
          _id: 'mock-wait/lab/0',
          n: 0,
          owner: alice,
          worst_usd: 0.17,
          instance_type: 't3.micro',
        });
        expect(GroupSlot.parse(second)).toMatchObject({ _id: 'mock-wait/lab/1', n: 1, owner: bob });
        expect(third).toBeUndefined();
        expect(await db.takeSlot(slotRequest(carol, { group: 'lab-b' }))).toMatchObject({ _id: 'mock-wait/lab-b/0', owner: carol });
        expect(await db.takeSlot(slotRequest(carol, { analysis: 'unit-filter' }))).toMatchObject({ _id: 'unit-filter/lab/0' });
        const live = await db.liveSlots('mock-wait', 'lab');
        expect(live.map((slot) => [slot.n, slot.owner.run])).toEqual([
          [0, alice.run],
          [1, bob.run],
        ]);
      });

      it('a slot given back is free again; only its owner can give it back or renew it', async () => {
        const slot = (await db.takeSlot(slotRequest(alice, { limit: 1 })))!;

        expect(await db.releaseSlot(slot._id, bob)).toBe(false);
        expect(await db.renewSlot(slot._id, bob, LEASE)).toBe(false);
        expect(await db.takeSlot(slotRequest(carol, { limit: 1 }))).toBeUndefined();
        expect(await db.releaseSlot(slot._id, alice)).toBe(true);
        expect(await db.releaseSlot(slot._id, alice)).toBe(false);

        expect(await db.takeSlot(slotRequest(carol, { limit: 1 }))).toMatchObject({ n: 0, owner: carol });
      });

      it("a slot whose lease lapsed is taken over; its old owner can neither renew it nor give the new owner's back", async () => {
        const slot = (await db.takeSlot(slotRequest(alice, { limit: 1 })))!;
        const later = new Date(Date.now() + 2 * LEASE);

        expect(await db.liveSlots('mock-wait', 'lab', later)).toEqual([]);
        const taken = await db.takeSlot(slotRequest(bob, { limit: 1, now: later }));

        expect(taken).toMatchObject({ _id: slot._id, owner: bob });
        expect(await db.renewSlot(slot._id, alice, LEASE)).toBe(false);
        expect(await db.releaseSlot(slot._id, alice)).toBe(false);
        expect((await db.liveSlots('mock-wait', 'lab', later)).map((s) => s.owner)).toEqual([bob]);
      });

      it('renew by the owner extends the lease', async () => {
        const slot = (await db.takeSlot(slotRequest(alice, { leaseMs: 1000 })))!;
        const soon = new Date(Date.now() + 5000);
        expect(await db.liveSlots('mock-wait', 'lab', soon)).toEqual([]);

        expect(await db.renewSlot(slot._id, alice, LEASE)).toBe(true);

        expect((await db.liveSlots('mock-wait', 'lab', soon)).map((s) => s._id)).toEqual([slot._id]);
      });

      it("a slot held for its job's machine stays held after its runner's lease lapsed: another job cannot take it, the same job taken over takes it with it", async () => {
        const identity = recordDraft({ seed: 'slot-machine' })._id;
        const slot = (await db.takeSlot(slotRequest(alice, { limit: 1, identity })))!;
        const machineGone = new Date(Date.now() + 10 * LEASE);
        expect(await db.renewSlot(slot._id, alice, LEASE, machineGone)).toBe(true);
        const runnerDead = new Date(Date.now() + 2 * LEASE);

        expect((await db.liveSlots('mock-wait', 'lab', runnerDead)).map((s) => s._id)).toEqual([slot._id]);
        expect(await db.takeSlot(slotRequest(bob, { limit: 1, now: runnerDead })), 'another job waits for the machine').toBeUndefined();
        expect(await db.takeSlot(slotRequest(bob, { limit: 1, identity })), 'not while its runner is alive').toBeUndefined();

        expect(
          await db.takeSlot(slotRequest(carol, { limit: 1, identity, now: runnerDead })),
          'not by a runner that may not adopt the job (its claim is live elsewhere)',
        ).toBeUndefined();
        const adopted = await db.takeSlot(slotRequest(carol, { limit: 1, identity, now: runnerDead, adopt: {} }));
        expect(adopted).toMatchObject({ _id: slot._id, n: 0, owner: carol, taken: slot.taken, machine_until: machineGone.toISOString() });
        expect(await db.takeSlot(slotRequest(bob, { limit: 1, identity, now: runnerDead, adopt: {} })), 'taken over once').toBeUndefined();
        expect(await db.releaseSlot(slot._id, alice)).toBe(false);
        expect(await db.releaseSlot(slot._id, carol)).toBe(true);
        expect(await db.takeSlot(slotRequest(bob, { limit: 1, now: runnerDead }))).toMatchObject({ n: 0, owner: bob });
      });

      it("the slot of a runner whose claim lapsed is taken over by the job's next runner even while the slot's own lease runs, and only once", async () => {
        const identity = recordDraft({ seed: 'slot-dead-owner' })._id;
        const slot = (await db.takeSlot(slotRequest(alice, { limit: 1, identity })))!;

        expect(
          await db.takeSlot(slotRequest(bob, { limit: 1, identity, adopt: { deadOwner: carol } })),
          'another runner named',
        ).toBeUndefined();
        const adopted = await db.takeSlot(slotRequest(bob, { limit: 1, identity, adopt: { deadOwner: alice } }));
        expect(adopted).toMatchObject({ _id: slot._id, owner: bob });
        expect(
          await db.takeSlot(slotRequest(carol, { limit: 1, identity, adopt: { deadOwner: alice } })),
          'bob holds it now',
        ).toBeUndefined();
        expect(await db.renewSlot(slot._id, alice, LEASE)).toBe(false);
      });

      it('a slot whose machine hold and lease both passed is free for any job', async () => {
        const slot = (await db.takeSlot(slotRequest(alice, { limit: 1 })))!;
        expect(await db.renewSlot(slot._id, alice, LEASE, new Date(Date.now() + 3 * LEASE))).toBe(true);
        const machineGone = new Date(Date.now() + 4 * LEASE);

        expect(await db.liveSlots('mock-wait', 'lab', machineGone)).toEqual([]);
        expect(await db.takeSlot(slotRequest(bob, { limit: 1, now: machineGone }))).toMatchObject({ _id: slot._id, owner: bob });
      });

      it('without an instance_limit every job gets a slot of its own, the lowest number free', async () => {
        const slots = [];
        for (let i = 0; i < 5; i++) slots.push(await db.takeSlot(slotRequest(owner(`free-${i}`), { limit: undefined })));
        expect(slots.map((slot) => slot?.n)).toEqual([0, 1, 2, 3, 4]);

        expect(await db.releaseSlot(slots[2]!._id, owner('free-2'))).toBe(true);

        expect(await db.takeSlot(slotRequest(carol, { limit: undefined }))).toMatchObject({ n: 2, owner: carol });
        expect(await db.liveSlots('mock-wait', 'lab')).toHaveLength(5);
      });

      it("groupSpend adds up the estimated cost of the group's attempts that ended since a moment, and of all of them without one", async () => {
        const cost = (usd: number) => ({ usd, instance_type: 't3.micro', runtime_s: 60, price_per_hour: usd * 60 });
        const spent = (seed: string, group: string, attempts: [string, number | undefined][], analysis = 'mock-wait') => {
          const record = finishedRecord({ seed, analysis: { name: analysis, version: '1.0.0' } });
          const base = record.attempts[0]!;
          return MetadataRecord.parse({
            ...record,
            job: {
              store: 's3',
              bucket: analysis,
              group,
              timestamp: seed,
              results: `s3://${analysis}/${group}/r/`,
              logs: `s3://${analysis}/${group}/l/`,
            },
            attempts: attempts.map(
              ([ended, usd], i): Attempt => ({ ...base, n: i + 1, ended, ...(usd === undefined ? {} : { cost: cost(usd) }) }),
            ),
          });
        };
        await db.importRecords([
          spent('october-and-november', 'lab', [
            ['2026-10-31T23:59:59.999Z', 1],
            ['2026-11-01T00:00:00.000Z', 2],
          ]),
          spent('november', 'lab', [['2026-11-20T10:00:00.000Z', 0.25]]),
          spent('no-cost-recorded', 'lab', [['2026-11-21T10:00:00.000Z', undefined]]),
          spent('other-group', 'lab-b', [['2026-11-20T10:00:00.000Z', 8]]),
          spent('other-analysis', 'lab', [['2026-11-20T10:00:00.000Z', 16]], 'unit-filter'),
        ]);

        expect(await db.groupSpend('mock-wait', 'lab', new Date('2026-11-01T00:00:00.000Z'))).toEqual({ usd: 2.25, attempts: 2 });
        expect(await db.groupSpend('mock-wait', 'lab')).toEqual({ usd: 3.25, attempts: 3 });
        expect(await db.groupSpend('mock-wait', 'lab-b', new Date('2026-11-01T00:00:00.000Z'))).toEqual({ usd: 8, attempts: 1 });
        expect(await db.groupSpend('mock-wait', 'nobody')).toEqual({ usd: 0, attempts: 0 });
      });

      it('a read-only open of a missing database holds no slots and no spend', async () => {
        const reader = await openDatabase(backend.freshUrl(), { home: backend.home, readOnly: true });
        try {
          expect(await reader.liveSlots('mock-wait', 'lab')).toEqual([]);
          expect(await reader.groupSpend('mock-wait', 'lab')).toEqual({ usd: 0, attempts: 0 });
        } finally {
          await reader.close();
        }
      });

      it('slots are atomic across processes: 4 runners asking 5 times each for a group of 3 slots take exactly 3', async () => {
        await db.close();
        const workers = Array.from({ length: 4 }, (_, i) => startSlotWorker(url, backend.home, 5, 3, `slotter-${i}`, backend.setup));
        await Promise.all(workers.map((w) => w.ready));
        for (const w of workers) w.go();

        const taken = (await Promise.all(workers.map((w) => w.won))).flat();

        expect(taken.sort()).toEqual(['mock-wait/lab/0', 'mock-wait/lab/1', 'mock-wait/lab/2']);
        db = await openDatabase(url, { home: backend.home });
        expect(await db.liveSlots('mock-wait', 'lab')).toHaveLength(3);
      });
    });
  });
}

describe('URLs no kind answers', () => {
  it('are refused (exit 2) with every registered URL form, the kinds registered from outside included', async () => {
    await expect(openDatabase('bogus://x', { home: tmpdir() })).rejects.toMatchObject({
      exitCode: 2,
      message: `--db "bogus://x" is not supported: use sqlite:<file> (the default is sqlite: under the workspace), mongodb://host/db or toy:<file> (a test's SQLite file)`,
    });
  });

  it('a kind whose prefix overlaps a registered one is refused when it registers', () => {
    expect(() => registerDatabase({ prefixes: ['mongodb:'], usage: 'x', open: () => Promise.reject(new Error('unused')) })).toThrow(
      /database URL prefix "mongodb:" overlaps mongodb:\/\/host\/db's/,
    );
  });
});

describe('MongoDB URLs', () => {
  it('a mongodb:// URL names its database in the path, caas when it names none', () => {
    expect(databaseName('mongodb://localhost:27017')).toBe('caas');
    expect(databaseName('mongodb://localhost:27017/?retryWrites=false')).toBe('caas');
    expect(databaseName('mongodb://u:p@h1:1,h2:2/aind_meta?authSource=admin')).toBe('aind_meta');
    expect(databaseName('mongodb+srv://cluster.example.net/my%20db')).toBe('my db');
  });

  it('the test helper swaps the database and keeps logging in where the URL said', () => {
    expect(withDatabase('mongodb://127.0.0.1:4000/', 'x')).toBe('mongodb://127.0.0.1:4000/x');
    expect(withDatabase('mongodb://u:p@h:1/orig?tls=true', 'x')).toBe('mongodb://u:p@h:1/x?tls=true&authSource=orig');
  });
});

const tmpRoot = mkdtempSync(path.join(tmpdir(), 'caas-store-'));
let sqliteCount = 0;
conformance({
  title: 'SqliteDatabase (a real file)',
  home: tmpRoot,
  freshUrl: () => `sqlite:${path.join(tmpRoot, `store-${++sqliteCount}.sqlite`)}`,
  created: async (url) => existsSync(url.slice('sqlite:'.length)),
  cleanup: async () => rmSync(tmpRoot, { recursive: true, force: true }),
});

// A kind registered from a test (importing toy-database.ts registers it), not in backends/db: the
// same promises, through openDatabase, racing runners included.
const toyRoot = mkdtempSync(path.join(tmpdir(), 'caas-store-toy-'));
let toyCount = 0;
conformance({
  title: `a kind registered from outside backends/db (${TOY_PREFIX}<file>)`,
  home: toyRoot,
  freshUrl: () => `${TOY_PREFIX}${path.join(toyRoot, `toy-${++toyCount}.sqlite`)}`,
  setup: path.join(repoRoot, 'test/support/toy-database.ts'),
  created: async (url) => existsSync(url.slice(TOY_PREFIX.length)),
  cleanup: async () => rmSync(toyRoot, { recursive: true, force: true }),
});

const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);
const mongoDatabases: string[] = [];
conformance({
  title: mongo.uri ? 'MongoDatabase' : `MongoDatabase (${mongo.reason})`,
  ...(mongo.uri ? {} : { skip: mongo.reason }),
  home: tmpRoot,
  freshUrl: () => {
    const name = `caas_conformance_${process.pid}_${mongoDatabases.length}`;
    mongoDatabases.push(name);
    return withDatabase(mongo.uri as string, name);
  },
  created: async (url) => {
    const client = await MongoClient.connect(url);
    try {
      return (await client.db().listCollections().toArray()).length > 0;
    } finally {
      await client.close();
    }
  },
  cleanup: async () => {
    if (mongo.uri) {
      const client = await MongoClient.connect(mongo.uri);
      try {
        for (const name of mongoDatabases) await client.db(name).dropDatabase();
      } finally {
        await client.close();
      }
    }
    await mongo.stop();
  },
});
