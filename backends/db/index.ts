import { CaasError } from '../../models/caas-error.ts';
import type { Filter } from '../../models/filter.ts';
import { type GroupSlot, slotId } from '../../models/group-slot.ts';
import type { Attempt, JobLocation, MetadataRecord, Owner, Submitter } from '../../models/record.ts';
import type { JobQueue } from './queue.ts';

// A filter is checked the same way by every store (models/filter.ts); a store adds only what its server rejects.
export { type Filter, InvalidFilterError } from '../../models/filter.ts';

export interface QueryOptions {
  sort?: Record<string, 1 | -1>;
  limit?: number;
  /** Told how the store answered once the records have been read (or the reader stopped): `caas query --explain`. */
  explain?: (explanation: QueryExplanation) => void;
}

/** How a store answered a find: what narrowed the records down, and how many it read to answer. */
export interface QueryExplanation {
  store: string;
  /** The indexes used, by name; none for a full scan. */
  indexes: string[];
  /** The plan in words: the indexed part of the filter, or why every record was read. */
  plan: string;
  /** Records the indexes named before the rest of the filter was checked, when the store knows. */
  candidates?: number;
  /** Documents read (parsed and checked, or examined by the server). */
  documentsRead: number;
  returned: number;
  /** How the sort was done, when there was one. */
  sort?: string;
}

/** What a claim attempt found. `won` only when this runner now holds the lease. */
export type ClaimOutcome =
  | { won: true; record: MetadataRecord; attempt: number }
  /** `failed`: another runner recorded a failure after this one planned; the next run retries it. */
  | { won: false; record: MetadataRecord; state: 'succeeded' | 'running' | 'failed' };

export interface ClaimRequest {
  /** The record to insert when the identity is new (status and attempts are set by the store). */
  draft: MetadataRecord;
  owner: Owner;
  leaseMs: number;
  /** Rerun a succeeded identity as a new attempt, with this reason recorded. */
  force?: string;
  /** Where the new attempt will write (its own job folder); recorded with the attempt at claim time. */
  job?: JobLocation;
  /**
   * When this runner planned: a failure recorded after it was another runner's attempt in the same
   * wave, and is left to the next run rather than retried at once (no retry storms between runners).
   */
  plannedAt?: Date;
  /** Who the new attempt runs for, where that is known; kept with the attempt. */
  submitter?: Submitter;
  now?: Date;
}

/** A runner asking for one of a user group's slots (models/group-slot.ts). */
export interface SlotRequest {
  analysis: string;
  group: string;
  /** The group's instance_limit: only slots 0 to limit-1. Without it, the lowest free number (a group with only a budget). */
  limit?: number;
  identity: string;
  owner: Owner;
  leaseMs: number;
  /** The job's worst-case cost, which the slot holds against the group's budget while it runs. */
  worstUsd: number;
  instanceType: string;
  /** Until when the job's machine may run, whatever becomes of the runner: the slot stays held that long. */
  machineUntil?: Date;
  /**
   * The job's own slot may be taken over: no live runner holds its claim. `deadOwner` is the runner
   * whose claim lapsed, whose slot is taken over even if its lease has not lapsed yet (the two
   * leases renew apart). Absent: the job may be running elsewhere, and only a free slot is taken.
   */
  adopt?: { deadOwner?: Owner };
  now?: Date;
}

/** What a group's attempts are estimated to have cost. */
export interface GroupSpend {
  usd: number;
  /** How many attempts the sum is over. */
  attempts: number;
}

/** The metadata collection: one record per identity. */
export interface MetadataStore {
  /** Records for many identities in one round trip (the gate's batched lookup). */
  lookup(ids: readonly string[]): Promise<Map<string, MetadataRecord>>;
  /** Atomic insert-if-absent or takeover of a failed / expired / forced record as a new attempt. */
  claim(id: string, request: ClaimRequest): Promise<ClaimOutcome>;
  /** Extends the lease while the owner still holds it; false when the claim was lost. */
  renew(id: string, owner: Owner, leaseMs: number): Promise<boolean>;
  /**
   * Rewrites the record while the owner holds its lease, which it keeps (an adoption reopens an
   * earlier attempt). False when another runner has taken the record over (nothing is written).
   */
  update(id: string, owner: Owner, change: (record: MetadataRecord) => MetadataRecord): Promise<boolean>;
  /**
   * Writes the outcome of the owner's current attempt (status, outputs, ...) and drops the lease.
   * False when another runner has taken the record over meanwhile (nothing is written then).
   */
  finish(id: string, owner: Owner, update: (record: MetadataRecord) => MetadataRecord): Promise<boolean>;
  get(id: string): Promise<MetadataRecord | undefined>;
  /**
   * Inserts finished records as they are (a migration from another store, a restore, a benchmark's
   * fixture). An identity already present is left untouched, never overwritten: importing cannot
   * undo a run. Returns how many were inserted.
   */
  importRecords(records: AsyncIterable<MetadataRecord> | Iterable<MetadataRecord>): Promise<number>;
  /** Identities starting with a prefix (for `caas show <prefix>`), at most `limit`. */
  idsWithPrefix(prefix: string, limit: number): Promise<string[]>;
  /** Records matching a MongoDB filter. */
  find(filter: Filter, options?: QueryOptions): AsyncIterable<MetadataRecord>;
  /**
   * Takes a slot of a user group, atomically across runners: the job's own slot when its runner's
   * lease lapsed (`orphanedSlotOf`: a job taken over keeps its place), else the lowest-numbered one
   * that is free or no longer held (an insert-if-absent on its `_id`, or a takeover of exactly the
   * slot that was read). Undefined when all `limit` slots are held.
   */
  takeSlot(request: SlotRequest): Promise<GroupSlot | undefined>;
  /**
   * Extends a slot's lease while the owner still holds it, and sets its machine hold when given;
   * false when it lapsed and was taken, or was given back.
   */
  renewSlot(id: string, owner: Owner, leaseMs: number, machineUntil?: Date): Promise<boolean>;
  /** Gives a slot back; false when the owner did not hold it (any more). */
  releaseSlot(id: string, owner: Owner): Promise<boolean>;
  /** The group's slots whose lease is live at `now`, by number. */
  liveSlots(analysis: string, group: string, now?: Date): Promise<GroupSlot[]>;
  /** The estimated cost of the group's attempts that ended at or after `since` (all of them without it). */
  groupSpend(analysis: string, group: string, since?: Date): Promise<GroupSpend>;
  /** The jobs `caas serve` accepted and has not answered yet (backends/db/queue.ts). */
  readonly queue: JobQueue;
  close(): Promise<void>;
}

/** The data-asset catalog (`data_assets`): AIND-shaped documents with _id, name, location, ... */
export interface Catalog {
  importAssets(assets: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>): Promise<number>;
  findAssets(filter: Filter, options?: QueryOptions): AsyncIterable<Record<string, unknown>>;
  getAssets(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>>;
}

export interface Database extends MetadataStore, Catalog {
  readonly url: string;
}

/**
 * A catalog as `caas dispatch` and `caas catalog query` read it (--catalog): nothing that writes,
 * so a collection caas does not own (AIND's metadata) is never touched, by type as well as by use.
 */
export interface CatalogReader extends Pick<Catalog, 'findAssets' | 'getAssets'> {
  readonly url: string;
  close(): Promise<void>;
}

export interface DbOptions {
  /** Workspace folder: the default SQLite file lives at {home}/metadata.sqlite. */
  home: string;
  /** Open without creating anything: a missing database reads as empty (dry runs). */
  readOnly?: boolean;
  /** With readOnly: a missing database is an error, not empty (a reaper must not act on an empty DB). */
  mustExist?: boolean;
}

/**
 * --db names nothing caas can use: an unknown scheme, or a file that is not a caas metadata DB.
 * The user's input, not a fault of the store: exit 2, nothing touched.
 */
export class DatabaseUrlError extends CaasError {}

/** One kind of metadata DB: the URLs it answers, and how to open one. */
export interface DatabaseKind {
  /** What its URLs start with, scheme included: "sqlite:", "mongodb://". */
  prefixes: readonly string[];
  /** Its URL's form, for --db's help and errors: "mongodb://host/db". */
  usage: string;
  /** Imports the store's file only now, so a kind nobody asked for costs nothing (the MongoDB driver). */
  open(url: string, options: DbOptions): Promise<Database>;
  /** Its URL forms as a --catalog, when they are more than `usage` says. */
  catalogUsage?: string;
  /**
   * Opens a catalog to read only, for URLs that name one another way than a metadata DB does (a
   * collection of someone else's database); without it, the metadata DB's own catalog, read-only.
   */
  openCatalog?(url: string, options: { home: string }): Promise<CatalogReader>;
}

const databaseKinds: DatabaseKind[] = [];

/**
 * Makes `--db` open URLs with these prefixes with this kind. The built-in kinds register at the end
 * of this file; a test, or a program embedding caas, registers its own before it opens anything.
 */
export function registerDatabase(kind: DatabaseKind): void {
  for (const prefix of kind.prefixes) {
    if (!/^[a-z][a-z0-9+.-]*:/.test(prefix)) throw new Error(`database URL prefix "${prefix}" does not start with a scheme ("name:")`);
    const taken = databaseKinds.find((other) => other.prefixes.some((p) => p.startsWith(prefix) || prefix.startsWith(p)));
    if (taken) throw new Error(`database URL prefix "${prefix}" overlaps ${taken.usage}'s`);
  }
  databaseKinds.push(kind);
}

/** The URL forms --db accepts, as "a or b", for its help and errors. */
export function describeDatabases(): string {
  const forms = databaseKinds.map((kind) => kind.usage);
  return forms.length > 1 ? `${forms.slice(0, -1).join(', ')} or ${forms.at(-1)}` : (forms[0] ?? '(none registered)');
}

/** The URL forms --catalog accepts, as "a or b", for its help and errors. */
export function describeCatalogs(): string {
  const forms = databaseKinds.map((kind) => kind.catalogUsage ?? kind.usage);
  return forms.length > 1 ? `${forms.slice(0, -1).join(', ')} or ${forms.at(-1)}` : (forms[0] ?? '(none registered)');
}

function kindOf(url: string): DatabaseKind | undefined {
  return databaseKinds.find((candidate) => candidate.prefixes.some((prefix) => url.startsWith(prefix)));
}

/** Opens the metadata DB a URL names, with the registered kind whose prefix it starts with. */
export function openDatabase(url: string, options: DbOptions): Promise<Database> {
  const kind = kindOf(url);
  if (!kind) return Promise.reject(new DatabaseUrlError(`--db "${url}" is not supported: use ${describeDatabases()}`));
  return kind.open(url, options);
}

/** Opens the catalog a URL names, read-only, with the registered kind whose prefix it starts with. */
export function openCatalog(url: string, options: { home: string }): Promise<CatalogReader> {
  const kind = kindOf(url);
  if (!kind) return Promise.reject(new DatabaseUrlError(`--catalog "${url}" is not supported: use ${describeCatalogs()}`));
  return kind.openCatalog ? kind.openCatalog(url, options) : kind.open(url, { home: options.home, readOnly: true });
}

/** The pure rule of the gate, shared by every store so they cannot disagree. */
export function claimVerdict(
  existing: MetadataRecord | undefined,
  now: Date,
  force: string | undefined,
  plannedAt?: Date,
): 'insert' | 'takeover' | 'succeeded' | 'running' | 'failed' {
  if (!existing) return 'insert';
  if (existing.status === 'succeeded') return force ? 'takeover' : 'succeeded';
  if (existing.status === 'failed') return plannedAt && Date.parse(existing.updated) > plannedAt.getTime() ? 'failed' : 'takeover';
  const expires = existing.lease ? Date.parse(existing.lease.expires) : 0;
  return expires > now.getTime() ? 'running' : 'takeover';
}

/**
 * The record after a claim: a new attempt under the new owner; an attempt whose lease lapsed is
 * closed as failed. Taking over a lapsed lease, the new attempt is `claimed` until its runner has
 * looked at the lapsed one (adopt it, record it, or start anew): the old runner, should it wake
 * up, waits for that decision instead of guessing. A `claimed` attempt whose runner died before
 * deciding never ran anything and is dropped.
 */
export function claimedRecord(existing: MetadataRecord | undefined, request: ClaimRequest, now: Date): MetadataRecord {
  const iso = now.toISOString();
  const base = existing ?? request.draft;
  const attempts = base.attempts
    .filter((a) => a.status !== 'claimed')
    .map((a) =>
      a.status === 'running'
        ? {
            ...a,
            status: 'failed' as const,
            ended: a.ended ?? iso,
            reason: a.reason ?? 'lease expired: the runner stopped renewing its claim',
            lapsed: true,
          }
        : a,
    );
  const n = attempts.length + 1;
  attempts.push({
    n,
    started: iso,
    ended: null,
    status: existing?.status === 'running' ? 'claimed' : 'running',
    reason: null,
    exit_code: null,
    results: request.job?.results ?? null,
    owner: request.owner,
    ...(request.force && existing ? { force_reason: request.force } : {}),
    ...(request.submitter ? { submitter: request.submitter } : {}),
  });
  return {
    ...base,
    // Fresh provenance of this dispatch, the rest as first recorded.
    query: request.draft.query ?? base.query,
    job: request.job ?? base.job,
    status: 'running',
    attempts,
    lease: { owner: request.owner, expires: new Date(now.getTime() + request.leaseMs).toISOString() },
    updated: iso,
  };
}

export function sameOwner(a: Owner | undefined, b: Owner): boolean {
  return !!a && a.run === b.run && a.pid === b.pid && a.host === b.host;
}

/** The slot a request takes as number `n`, shared by every store so their slots look the same. */
export function takenSlot(request: SlotRequest, n: number, now: Date): GroupSlot {
  return {
    _id: slotId(request.analysis, request.group, n),
    analysis: request.analysis,
    group: request.group,
    n,
    identity: request.identity,
    owner: request.owner,
    taken: now.toISOString(),
    expires: new Date(now.getTime() + request.leaseMs).toISOString(),
    worst_usd: request.worstUsd,
    instance_type: request.instanceType,
    ...(request.machineUntil ? { machine_until: request.machineUntil.toISOString() } : {}),
  };
}

/** Whether a slot is held at `now`: by its runner's lease, or by a machine that may still run its job. */
export function slotLive(slot: GroupSlot, now: Date): boolean {
  return Date.parse(slot.expires) > now.getTime() || (slot.machine_until !== undefined && Date.parse(slot.machine_until) > now.getTime());
}

/**
 * The slot a job that is taken over takes with it (its machine may still be held there): its own
 * slot whose runner's lease lapsed, or that the runner of its lapsed claim holds. Only when the
 * request may adopt: a slot of a runner whose claim is live is never taken, since it may still be
 * running the job.
 */
export function orphanedSlotOf(slots: Iterable<GroupSlot>, request: SlotRequest, now: Date): GroupSlot | undefined {
  if (!request.adopt) return undefined;
  const dead = request.adopt.deadOwner;
  for (const slot of slots) {
    if (slot.identity !== request.identity) continue;
    if (Date.parse(slot.expires) <= now.getTime() || (dead && sameOwner(slot.owner, dead))) return slot;
  }
  return undefined;
}

/** The orphaned slot as its new runner holds it: same number, admission time and machine hold, a new owner and lease. */
export function adoptedSlot(slot: GroupSlot, request: SlotRequest, now: Date): GroupSlot {
  return { ...slot, owner: request.owner, expires: new Date(now.getTime() + request.leaseMs).toISOString() };
}

/** The slot numbers a request may take, lowest first: below its limit, or (without one) up to one past those held. */
export function slotNumbers(request: SlotRequest, held: number): number[] {
  const count = request.limit ?? held + 1;
  return Array.from({ length: count }, (_, n) => n);
}

/** The spend of some attempts, for stores that add it up themselves: those with a cost that ended at or after `since`. */
export function spendOf(attempts: Iterable<Attempt>, since: Date | undefined): GroupSpend {
  const from = since?.toISOString();
  let usd = 0;
  let counted = 0;
  for (const attempt of attempts) {
    if (!attempt.cost || (from !== undefined && (attempt.ended === null || attempt.ended < from))) continue;
    usd += attempt.cost.usd;
    counted++;
  }
  return { usd, attempts: counted };
}

// The built-in metadata DBs. Each one's file is imported when a URL of its kind is opened.
registerDatabase({
  prefixes: ['sqlite:'],
  usage: 'sqlite:<file> (the default is sqlite: under the workspace)',
  open: async (url, options) => (await import('./sqlite.ts')).SqliteDatabase.open(url, options),
});
registerDatabase({
  prefixes: ['mongodb://', 'mongodb+srv://'],
  usage: 'mongodb://host/db',
  catalogUsage: "mongodb://host/db.collection (a collection of aind-data-schema documents, as AIND's metadata DB) or mongodb://host/db",
  open: async (url, options) => (await import('./mongo.ts')).MongoDatabase.open(url, options),
  openCatalog: async (url, options) => (await import('./mongo.ts')).openMongoCatalog(url, options),
});
