import { type Collection, type Document, MongoBulkWriteError, MongoClient, type Filter as MongoFilter, MongoServerError } from 'mongodb';
import { checkFilter } from '../../models/filter.ts';
import type { GroupSlot } from '../../models/group-slot.ts';
import type { QueuedJob } from '../../models/queued-job.ts';
import type { MetadataRecord, Owner } from '../../models/record.ts';
import {
  adoptedSlot,
  type CatalogReader,
  type ClaimOutcome,
  type ClaimRequest,
  claimedRecord,
  claimVerdict,
  type Database,
  DatabaseUrlError,
  type DbOptions,
  type Filter,
  type GroupSpend,
  InvalidFilterError,
  orphanedSlotOf,
  type QueryOptions,
  type SlotRequest,
  slotLive,
  slotNumbers,
  spendOf,
  takenSlot,
} from './index.ts';
import { MongoQueue } from './mongo-queue.ts';
import { createRecordIndexes, explainFind } from './mongo-record-index.ts';

/** Identities per `$in` query; the cursor batch is as large, so each chunk is one round trip. */
const LOOKUP_CHUNK = 1000;
const IMPORT_BATCH = 1000;
/**
 * A claim retries only when another runner changed the record between our read and our write;
 * each retry sees a newer record, so this bound is reached only under pathological contention.
 */
const CLAIM_ROUNDS = 10;
const DUPLICATE_KEY = 11000;

type AssetDocument = Document & { _id: string };

/** The database a URL names in its path; `caas` when it names none. */
export function databaseName(url: string): string {
  const match = /^mongodb(?:\+srv)?:\/\/[^/?]*\/([^?]*)/.exec(url);
  const name = decodeURIComponent(match?.[1] ?? '');
  return name === '' ? 'caas' : name;
}

/**
 * The collection a --catalog URL names as `db.collection` in its path (database names cannot hold
 * a dot, collection names can: the first dot separates them), or undefined for a plain database.
 */
export function catalogCollection(url: string): { database: string; collection: string; clientUrl: string } | undefined {
  const match = /^(mongodb(?:\+srv)?:\/\/[^/?]*\/)([^?]*)(.*)$/.exec(url);
  const path = decodeURIComponent(match?.[2] ?? '');
  const dot = path.indexOf('.');
  if (!match || dot < 0) return undefined;
  const database = path.slice(0, dot);
  // The driver reads the path as the database (and, with credentials, as where to log in).
  return { database, collection: path.slice(dot + 1), clientUrl: `${match[1]}${encodeURIComponent(database)}${match[3]}` };
}

/** The URL as it may be printed: without its password. */
function redacted(url: string): string {
  return url.replace(/^(mongodb(?:\+srv)?:\/\/[^:/@]*):[^@/]*@/, '$1:****@');
}

/** The documents with these ids, by id: one `$in` query per chunk, the chunks in parallel. */
async function byIds<T extends { _id: string }>(collection: Collection<T>, ids: readonly string[]): Promise<Map<string, T>> {
  const chunks: string[][] = [];
  for (let i = 0; i < ids.length; i += LOOKUP_CHUNK) chunks.push(ids.slice(i, i + LOOKUP_CHUNK));
  const pages = await Promise.all(
    chunks.map((chunk) => collection.find({ _id: { $in: chunk } } as MongoFilter<T>, { batchSize: chunk.length }).toArray()),
  );
  const found = new Map<string, T>();
  for (const page of pages) for (const doc of page) found.set(doc._id, doc as T);
  return found;
}

/** Matches the record only while `owner` holds its running attempt (fields one by one: key order must not matter). */
function heldBy(id: string, owner: Owner): MongoFilter<MetadataRecord> {
  return { _id: id, status: 'running', 'lease.owner.host': owner.host, 'lease.owner.pid': owner.pid, 'lease.owner.run': owner.run };
}

/** Matches the slot only while `owner` holds it. */
function slotHeldBy(id: string, owner: Owner): MongoFilter<GroupSlot> {
  return { _id: id, 'owner.host': owner.host, 'owner.pid': owner.pid, 'owner.run': owner.run };
}

/** Matches the record only if nobody has written it since it was read as `seen`. */
function unchangedSince(seen: MetadataRecord): MongoFilter<MetadataRecord> {
  return {
    _id: seen._id,
    status: seen.status,
    updated: seen.updated,
    attempts: { $size: seen.attempts.length },
    'lease.expires': seen.lease?.expires ?? null,
  };
}

/**
 * Metadata in MongoDB (or AWS DocumentDB): `records` holds each MetadataRecord as is, `_id` =
 * identity; `data_assets` is the catalog. Claims are atomic without transactions: a new identity
 * is an insert that the unique `_id` lets only one runner win, and a takeover is a replace
 * conditioned on the record being exactly what the verdict was computed from. DocumentDB has no
 * retryable writes: its URL needs `retryWrites=false`.
 */
export class MongoDatabase implements Database {
  readonly queue: MongoQueue;

  private constructor(
    readonly url: string,
    private readonly client: MongoClient,
    private readonly records: Collection<MetadataRecord>,
    private readonly assets: Collection<AssetDocument>,
    private readonly slots: Collection<GroupSlot>,
    private readonly jobs: Collection<QueuedJob>,
  ) {
    this.queue = new MongoQueue(jobs);
  }

  static async open(url: string, options: DbOptions): Promise<MongoDatabase> {
    const name = databaseName(url);
    if (name.includes('.')) {
      throw new DatabaseUrlError(
        `--db ${redacted(url)}: "${name}" names a collection (database.collection), where --db names a database (mongodb://host/caas); a collection of AIND metadata is read with --catalog`,
      );
    }
    const client = await connect(url, '--db sqlite:');
    const db = client.db(name);
    const database = new MongoDatabase(
      url,
      client,
      db.collection('records'),
      db.collection('data_assets'),
      db.collection('slots'),
      db.collection('queue'),
    );
    // A read-only open (dry run) must not create anything, not even indexes on an empty database.
    if (!options.readOnly) {
      await Promise.all([
        database.records.createIndexes([{ key: { status: 1 } }, { key: { 'analysis.name': 1 } }, { key: { created: 1 } }]),
        database.assets.createIndexes([{ key: { created: 1 } }, { key: { name: 1 } }]),
        database.slots.createIndexes([{ key: { analysis: 1, group: 1 } }]),
        MongoQueue.indexes(database.jobs),
        // The paths provenance queries ask about (mongo-record-index.ts), as the SQLite store indexes them.
        createRecordIndexes(database.records),
      ]);
    }
    return database;
  }

  lookup(ids: readonly string[]): Promise<Map<string, MetadataRecord>> {
    return byIds(this.records, ids);
  }

  async claim(id: string, request: ClaimRequest): Promise<ClaimOutcome> {
    if (request.draft._id !== id) throw new Error(`claim of ${id} was given the draft of ${request.draft._id}`);
    const now = request.now ?? new Date();
    const fresh = claimedRecord(undefined, request, now);
    if (await this.insertNew(fresh)) return { won: true, record: fresh, attempt: 1 };
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      const existing = await this.records.findOne({ _id: id });
      if (!existing) {
        // Deleted since the insert failed: the identity is new again.
        if (await this.insertNew(fresh)) return { won: true, record: fresh, attempt: 1 };
        continue;
      }
      const verdict = claimVerdict(existing, now, request.force, request.plannedAt);
      if (verdict !== 'insert' && verdict !== 'takeover') return { won: false, record: existing, state: verdict };
      const record = claimedRecord(existing, request, now);
      const replaced = await this.records.replaceOne(unchangedSince(existing), record);
      if (replaced.matchedCount === 1) return { won: true, record, attempt: record.attempts.length };
    }
    throw new Error(`claim of ${id} kept losing races with other runners (${CLAIM_ROUNDS} rounds); try again`);
  }

  /** Inserts a record for a new identity; false when another runner's insert of it came first. */
  private async insertNew(record: MetadataRecord): Promise<boolean> {
    try {
      await this.records.insertOne(record);
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  async renew(id: string, owner: Owner, leaseMs: number): Promise<boolean> {
    const lease = { owner, expires: new Date(Date.now() + leaseMs).toISOString() };
    const result = await this.records.updateOne(heldBy(id, owner), { $set: { lease } });
    return result.matchedCount === 1;
  }

  update(id: string, owner: Owner, change: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    return this.rewrite(id, owner, (record) => ({ ...change(record), lease: record.lease }));
  }

  finish(id: string, owner: Owner, update: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    return this.rewrite(id, owner, (record) => ({ ...update(record), lease: null }));
  }

  /** Replaces a record its owner holds, unless another runner wrote it since it was read. */
  private async rewrite(id: string, owner: Owner, change: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    const record = await this.records.findOne(heldBy(id, owner));
    if (!record) return false;
    const finished = { ...change(record), updated: new Date().toISOString() };
    // A renewal by the owner meanwhile is harmless (at worst a lease one renewal older is written
    // back, and renewed again within a third of its length); a takeover is not.
    const filter = { ...heldBy(id, owner), updated: record.updated, attempts: { $size: record.attempts.length } };
    const result = await this.records.replaceOne(filter, finished);
    return result.matchedCount === 1;
  }

  async get(id: string): Promise<MetadataRecord | undefined> {
    return (await this.records.findOne({ _id: id })) ?? undefined;
  }

  async importRecords(records: AsyncIterable<MetadataRecord> | Iterable<MetadataRecord>): Promise<number> {
    let inserted = 0;
    let batch: MetadataRecord[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      // Unordered: a duplicate _id (an identity already recorded) fails alone and the rest go in.
      try {
        inserted += (await this.records.insertMany(batch, { ordered: false })).insertedCount;
      } catch (error) {
        if (!(error instanceof MongoBulkWriteError) || [error.writeErrors].flat().some((e) => e.code !== DUPLICATE_KEY)) throw error;
        inserted += error.insertedCount;
      }
      batch = [];
    };
    for await (const record of records) {
      batch.push(record);
      if (batch.length >= IMPORT_BATCH) await flush();
    }
    await flush();
    return inserted;
  }

  async idsWithPrefix(prefix: string, limit: number): Promise<string[]> {
    // MongoDB reads limit 0 as "no limit".
    if (limit <= 0) return [];
    const rows = await this.records
      .find({ _id: { $gte: prefix, $lt: `${prefix}\uffff` } }, { projection: { _id: 1 } })
      .sort({ _id: 1 })
      .limit(limit)
      .toArray();
    return rows.map((r) => r._id);
  }

  async *find(filter: Filter, options: QueryOptions = {}): AsyncIterable<MetadataRecord> {
    checkFilter(filter);
    if (options.limit === 0) return;
    const cursor = this.records.find(filter as MongoFilter<MetadataRecord>);
    if (options.sort) cursor.sort(options.sort);
    if (options.limit !== undefined) cursor.limit(options.limit);
    try {
      yield* cursor;
    } catch (error) {
      // MongoDB rejects what mingo accepted only in corner cases; it is still the caller's filter.
      if (error instanceof MongoServerError) throw new InvalidFilterError(error.message, { cause: error });
      throw error;
    } finally {
      // The server answers the filter itself, with its indexes: explaining is asking it how.
      if (options.explain) options.explain(await explainFind(this.records, filter, options));
    }
  }

  /**
   * Slots without transactions, as claims are: a free number is taken by inserting its `_id`
   * (the unique `_id` lets one runner win), a lapsed one by replacing exactly the slot that was read.
   */
  async takeSlot(request: SlotRequest): Promise<GroupSlot | undefined> {
    const now = request.now ?? new Date();
    const held = new Map((await this.slots.find({ analysis: request.analysis, group: request.group }).toArray()).map((s) => [s.n, s]));
    const orphaned = orphanedSlotOf(held.values(), request, now);
    if (orphaned) {
      // Exactly the lapsed slot that was read: another runner that took it over first changed its owner or lease.
      const adopted = adoptedSlot(orphaned, request, now);
      const replaced = await this.slots.replaceOne({ ...slotHeldBy(orphaned._id, orphaned.owner), expires: orphaned.expires }, adopted);
      if (replaced.matchedCount === 1) return adopted;
    }
    for (const n of slotNumbers(request, held.size)) {
      const slot = takenSlot(request, n, now);
      let seen = held.get(n);
      if (!seen) {
        if (await this.insertSlot(slot)) return slot;
        seen = (await this.slots.findOne({ _id: slot._id })) ?? undefined;
        // Given back between the failed insert and this read: free again.
        if (!seen && (await this.insertSlot(slot))) return slot;
      }
      if (!seen || slotLive(seen, now)) continue;
      const replaced = await this.slots.replaceOne({ ...slotHeldBy(seen._id, seen.owner), expires: seen.expires }, slot);
      if (replaced.matchedCount === 1) return slot;
    }
    return undefined;
  }

  private async insertSlot(slot: GroupSlot): Promise<boolean> {
    try {
      await this.slots.insertOne(slot);
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  async renewSlot(id: string, owner: Owner, leaseMs: number, machineUntil?: Date): Promise<boolean> {
    const expires = new Date(Date.now() + leaseMs).toISOString();
    const held = machineUntil ? { expires, machine_until: machineUntil.toISOString() } : { expires };
    return (await this.slots.updateOne(slotHeldBy(id, owner), { $set: held })).matchedCount === 1;
  }

  async releaseSlot(id: string, owner: Owner): Promise<boolean> {
    return (await this.slots.deleteOne(slotHeldBy(id, owner))).deletedCount === 1;
  }

  async liveSlots(analysis: string, group: string, now = new Date()): Promise<GroupSlot[]> {
    const slots = await this.slots.find({ analysis, group }).toArray();
    return slots.filter((slot) => slotLive(slot, now)).sort((a, b) => a.n - b.n);
  }

  async groupSpend(analysis: string, group: string, since?: Date): Promise<GroupSpend> {
    // The server picks the records (an attempt that ended in the period); the sum is spendOf's, the same as every store's.
    const filter: MongoFilter<MetadataRecord> = { 'analysis.name': analysis, 'job.group': group };
    if (since) filter['attempts.ended'] = { $gte: since.toISOString() };
    const records = await this.records.find(filter, { projection: { attempts: 1 } }).toArray();
    return spendOf(
      records.flatMap((record) => record.attempts),
      since,
    );
  }

  async importAssets(assets: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>): Promise<number> {
    let count = 0;
    let batch: AssetDocument[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await this.assets.bulkWrite(
        batch.map((asset) => ({ replaceOne: { filter: { _id: asset._id }, replacement: asset, upsert: true } })),
        { ordered: false },
      );
      count += batch.length;
      batch = [];
    };
    for await (const asset of assets) {
      if (asset._id == null)
        throw new Error(`data asset ${JSON.stringify(asset).slice(0, 200)} has no _id: every catalog document needs one`);
      // The same key SQLite uses, so both stores find an asset by the same id.
      batch.push({ ...asset, _id: String(asset._id) });
      if (batch.length >= IMPORT_BATCH) await flush();
    }
    await flush();
    return count;
  }

  findAssets(filter: Filter, options: QueryOptions = {}): AsyncIterable<Record<string, unknown>> {
    return assetsMatching(this.assets, filter, options);
  }

  getAssets(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    return byIds(this.assets, ids);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

async function connect(url: string, instead: string): Promise<MongoClient> {
  const client = new MongoClient(url);
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.close().catch(() => {});
    throw new Error(
      `cannot reach MongoDB at ${redacted(url)}: ${(error as Error).message}. Check that the server is running and the URL (host, port, credentials) is right, or use ${instead}`,
      { cause: error },
    );
  }
}

/** The catalog documents a filter matches, in _id order. */
async function* assetsMatching<T extends Document>(
  collection: Collection<T>,
  filter: Filter,
  options: QueryOptions,
): AsyncIterable<Record<string, unknown>> {
  checkFilter(filter);
  if (options.limit === 0) return;
  // _id breaks ties, so the same query over the same catalog always streams the same way.
  const pipeline: Document[] = [{ $match: filter }, { $sort: { ...options.sort, _id: options.sort?._id ?? 1 } }];
  if (options.limit !== undefined) pipeline.push({ $limit: options.limit });
  try {
    yield* collection.aggregate<Record<string, unknown>>(pipeline);
  } catch (error) {
    // BadValue (2): the server's word for a malformed filter.
    if (error instanceof MongoServerError && error.code === 2) throw new InvalidFilterError(error.message, { cause: error });
    throw error;
  }
}

/**
 * --catalog mongodb://host/db.collection: a collection of aind-data-schema documents (AIND's
 * metadata DB, `_id`, `name`, `location`, `subject`, `data_description`, ...) read as the catalog.
 * caas does not own it, so it only ever reads: no index, no write, no collection of its own. Its
 * documents reach the dispatcher as JSON, as `caas catalog import` stores them (dates as ISO text,
 * ObjectIds as hex), so the same documents dispatch alike from either catalog.
 */
class MongoCatalog implements CatalogReader {
  private constructor(
    readonly url: string,
    private readonly client: MongoClient,
    private readonly assets: Collection<AssetDocument>,
  ) {}

  static async open(url: string, place: { database: string; collection: string; clientUrl: string }): Promise<MongoCatalog> {
    const client = await connect(place.clientUrl, '--catalog sqlite:');
    try {
      const db = client.db(place.database);
      // A missing collection reads as empty: a typo would dispatch nothing and say only "0 jobs".
      const found = await db.listCollections({ name: place.collection }, { nameOnly: true }).toArray();
      if (found.length === 0) {
        throw new DatabaseUrlError(
          `--catalog ${redacted(url)}: database "${place.database}" has no collection "${place.collection}" (use mongodb://host/database.collection)`,
        );
      }
      return new MongoCatalog(url, client, db.collection(place.collection));
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  async *findAssets(filter: Filter, options: QueryOptions = {}): AsyncIterable<Record<string, unknown>> {
    for await (const doc of assetsMatching(this.assets, filter, options)) yield asJson(doc);
  }

  async getAssets(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const found = await byIds(this.assets, ids);
    return new Map([...found].map(([id, doc]) => [id, asJson(doc)]));
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function asJson(doc: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(doc)) as Record<string, unknown>;
}

/** A --catalog URL of this kind: a collection (`db.collection`), or a caas metadata DB's own catalog. */
export async function openMongoCatalog(url: string, options: { home: string }): Promise<CatalogReader> {
  const place = catalogCollection(url);
  if (place) return MongoCatalog.open(url, place);
  return MongoDatabase.open(url, { home: options.home, readOnly: true });
}
