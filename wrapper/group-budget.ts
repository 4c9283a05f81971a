import { setTimeout as sleep } from 'node:timers/promises';
import { type MetadataStore, type SlotRequest, sameOwner } from '../backends/db/index.ts';
import type { Analysis } from '../models/analysis.ts';
import type { Blueprint, BlueprintGroup } from '../models/blueprint.ts';
import type { GroupSlot } from '../models/group-slot.ts';
import type { AttemptCost, Owner } from '../models/record.ts';
import type { PlanEntry } from './gate.ts';
import { groupsRefusal } from './group-access.ts';
import type { PreparedJob } from './prepare.ts';

export type BudgetPeriod = NonNullable<BlueprintGroup['budget']>['period'];

/**
 * When the budget period holding `now` began, in UTC: the day at 00:00, the ISO week on Monday at
 * 00:00, the month on its 1st at 00:00. 'total' has no start: every attempt counts.
 */
export function periodStart(period: BudgetPeriod, now: Date): Date | undefined {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  if (period === 'day') return new Date(Date.UTC(y, m, d));
  if (period === 'week') return new Date(Date.UTC(y, m, d - ((now.getUTCDay() + 6) % 7)));
  if (period === 'month') return new Date(Date.UTC(y, m, 1));
  return undefined;
}

/** "today (since 2026-11-27 UTC)", "this month (since 2026-11-01 UTC)", "in total". */
export function describePeriod(period: BudgetPeriod, start: Date | undefined): string {
  if (!start) return 'in total';
  return `${period === 'day' ? 'today' : `this ${period}`} (since ${start.toISOString().slice(0, 10)} UTC)`;
}

/** Dollars as people read them: cents when the amount is whole cents, else to a hundredth of a cent. */
export function formatUsd(usd: number): string {
  return Number.isInteger(Math.round(usd * 1e6) / 1e4) ? `$${usd.toFixed(2)}` : `$${usd.toFixed(4)}`;
}

/** The blueprint's price of an instance type per hour; a type it does not list costs nothing. */
export function pricePerHour(blueprint: Blueprint, instanceType: string): number {
  return blueprint.prices[instanceType] ?? 0;
}

/** What one job can cost at most: its instance type for the whole max runtime, after which it is stopped. */
export function worstCaseUsd(blueprint: Blueprint, instanceType: string): number {
  return (pricePerHour(blueprint, instanceType) * blueprint.max_runtime_minutes) / 60;
}

/** The estimated cost of an attempt that ran from `started` to `ended` (ISO times). */
export function attemptCost(blueprint: Blueprint, instanceType: string, started: string, ended: string): AttemptCost {
  const runtimeS = Math.max(0, (Date.parse(ended) - Date.parse(started)) / 1000) || 0;
  const price = pricePerHour(blueprint, instanceType);
  return { usd: (price * runtimeS) / 3600, instance_type: instanceType, runtime_s: runtimeS, price_per_hour: price };
}

/** One group of one analysis as the metadata DB sees it now: what it spent, what runs, what it may. */
export interface GroupUsage {
  analysis: string;
  group: string;
  period?: BudgetPeriod;
  /** Start of the current period; absent for 'total' and for groups without a budget (their spend is over all time). */
  since?: Date;
  /** Estimated cost of the attempts that ended in the period. */
  spentUsd: number;
  /** Live slots: the group's jobs that passed its limit and budget and have not ended. */
  slots: GroupSlot[];
  /** What the running jobs can still cost at most, together. */
  runningWorstUsd: number;
  capUsd?: number;
  instanceLimit?: number;
}

/** The group's spend in its current period and its live slots (the same numbers the runners check). */
export async function groupUsage(db: MetadataStore, analysis: string, group: BlueprintGroup, now = new Date()): Promise<GroupUsage> {
  const period = group.budget?.period;
  const since = period ? periodStart(period, now) : undefined;
  const [spent, slots] = await Promise.all([db.groupSpend(analysis, group.name, since), db.liveSlots(analysis, group.name, now)]);
  return {
    analysis,
    group: group.name,
    ...(period ? { period } : {}),
    ...(since ? { since } : {}),
    spentUsd: spent.usd,
    slots,
    runningWorstUsd: slots.reduce((sum, slot) => sum + slot.worst_usd, 0),
    ...(group.budget ? { capUsd: group.budget.usd } : {}),
    ...(group.instance_limit !== undefined ? { instanceLimit: group.instance_limit } : {}),
  };
}

/**
 * Why the group may start no job now, if it may not: its spend in the period plus the worst case of
 * its running jobs (those `counts` keeps: not the asking job's own slot) has reached the cap. A job
 * starts while the group is under its cap, so the cap is passed by at most one job's own cost.
 */
export function budgetRefusal(usage: GroupUsage, counts: (slot: GroupSlot) => boolean = () => true): string | undefined {
  if (usage.capUsd === undefined || usage.period === undefined) return undefined;
  const others = usage.slots.filter(counts);
  const running = others.reduce((sum, slot) => sum + slot.worst_usd, 0);
  if (usage.spentUsd + running < usage.capUsd) return undefined;
  const where = describePeriod(usage.period, usage.since);
  const runningText = others.length > 0 ? ` and up to ${formatUsd(running)} for ${others.length} running job(s)` : '';
  const next =
    usage.period === 'total'
      ? 'raise budget.usd in its blueprint'
      : `raise budget.usd in its blueprint or wait for the next ${usage.period}`;
  return `budget of group "${usage.group}" of ${usage.analysis} reached: ${formatUsd(usage.spentUsd)} spent ${where}${runningText}, cap ${formatUsd(usage.capUsd)} ${usage.period === 'total' ? 'in total' : `per ${usage.period}`}; the job was not started (${next})`;
}

/** Why a job of a group would wait for a slot now, for the plan: all instance_limit slots are held. */
export function slotWait(usage: GroupUsage): string | undefined {
  if (usage.instanceLimit === undefined || usage.slots.length < usage.instanceLimit) return undefined;
  return `waits for a slot: instance_limit ${usage.instanceLimit} of group "${usage.group}" reached (${usage.slots.length} running)`;
}

export interface GroupGate {
  db: MetadataStore;
  owner: Owner;
  /** The slot's lease, renewed at a third of its length like the claim's. */
  leaseMs: number;
  signal?: AbortSignal;
  /** How long a job waits for a slot before it is refused; default the analysis' max runtime (a slot frees by then). */
  slotWaitMs?: number;
  /** Progress notes (a job waiting for a slot); default stderr. */
  note?: (line: string) => void;
}

/** Keeps the job's slot held until `until`, when its machine must be gone, whatever becomes of the runner (best effort). */
export type HoldMachine = (until: Date) => Promise<void>;

/**
 * How a job left its group: `recorded` (its record is written, or it never launched, or another
 * runner has it now) gives the slot back; `unsettled` (a machine may run on that nobody else holds
 * a slot for: a job left running, or lost before its record) keeps it, unrenewed, until its lease
 * and machine hold pass.
 */
export type SlotOutcome = 'recorded' | 'unsettled';

/** A job that may start, holding its group's slot (none for a group without limit or budget) until `leave`. */
export type GroupAdmission =
  | { admitted: true; slot?: GroupSlot; leave(outcome: SlotOutcome): Promise<void>; holdMachine: HoldMachine }
  | { admitted: false; reason: string };

const OPEN: GroupAdmission = { admitted: true, leave: async () => {}, holdMachine: async () => {} };

/** When each group's wait was last announced, so a batch waiting on one limit prints a note now and then, not per job. */
const announced = new Map<string, number>();
const ANNOUNCE_EVERY_MS = 30_000;

/**
 * Lets a job into its group before it is claimed: refuses it when the group is not in the
 * blueprint or its budget is reached, else takes one of the group's slots in the metadata DB,
 * waiting while all instance_limit of them are held (up to `slotWaitMs`, then refused naming the
 * limit). The budget is checked again once the slot is held: runners that take slots at the same
 * moment each see the other's there, so together they cannot pass a cap one of them alone would
 * respect; a job refused only because of contenders that came after it gives way and tries again,
 * so they do not all refuse when one of them fits. Groups with neither limit nor budget take no slot.
 */
export async function enterGroup(job: PreparedJob, gate: GroupGate): Promise<GroupAdmission> {
  const { name: analysis, blueprint } = job.analysis;
  const unknown = groupsRefusal(job.analysis, job.group);
  if (unknown) return { admitted: false, reason: unknown };
  const group = blueprint.groups.find((g) => g.name === job.group)!;
  if (group.instance_limit === undefined && group.budget === undefined) return OPEN;
  const instanceType = job.input.instance_type ?? blueprint.instance_type;
  const waitMs = gate.slotWaitMs ?? blueprint.max_runtime_minutes * 60_000;
  const giveUp = Date.now() + waitMs;
  const pollMs = Math.min(2000, Math.max(100, gate.leaseMs / 10));
  let yielded = 0;
  const adopt = await adoption(job, gate);
  for (;;) {
    // The budget first: a group over its cap is refused at once, not after a wait for a slot. The
    // job's own slot (kept by a machine whose runner died) is the job itself, not another one.
    const over = budgetRefusal(await groupUsage(gate.db, analysis, group), (slot) => slot.identity !== job.identity);
    if (over) return { admitted: false, reason: over };
    const slot = await gate.db.takeSlot({
      analysis,
      group: group.name,
      limit: group.instance_limit,
      identity: job.identity,
      owner: gate.owner,
      leaseMs: gate.leaseMs,
      worstUsd: worstCaseUsd(blueprint, instanceType),
      instanceType,
      ...(adopt ? { adopt } : {}),
    });
    if (slot) {
      let usage: GroupUsage;
      try {
        usage = await groupUsage(gate.db, analysis, group);
      } catch (error) {
        // A slot this runner cannot use goes back now, not one lease later.
        await gate.db.releaseSlot(slot._id, gate.owner).catch(() => {});
        throw error;
      }
      // Another slot of the same job (a dead runner's, still held for its machine) is this job, not one more.
      const still = budgetRefusal(usage, (other) => other._id !== slot._id && other.identity !== job.identity);
      if (!still) {
        return {
          admitted: true,
          slot,
          leave: keepSlot(gate, slot),
          holdMachine: (until) => gate.db.renewSlot(slot._id, gate.owner, gate.leaseMs, until).then(noop, noop),
        };
      }
      await gate.db.releaseSlot(slot._id, gate.owner).catch(() => {});
      // Over the cap only with jobs that took their slots after this one: they give way as this
      // one does, so after a random pause one of the contenders finds the others gone and starts.
      if (yielded < CONTENTION_RETRIES && !budgetRefusal(usage, (other) => slotPrecedes(other, slot) && other.identity !== job.identity)) {
        yielded++;
        await sleep(20 + Math.random() * 30 * 2 ** yielded, undefined, { signal: gate.signal }).catch(() => {});
        continue;
      }
      return { admitted: false, reason: still };
    }
    if (group.instance_limit !== undefined) {
      const limit = `instance_limit ${group.instance_limit} of group "${group.name}" of ${analysis}`;
      if (gate.signal?.aborted) return { admitted: false, reason: `runner interrupted while waiting for a slot (${limit} reached)` };
      if (Date.now() >= giveUp) {
        return {
          admitted: false,
          reason: `${limit} stayed reached for ${Math.round(waitMs / 1000)} s: the job was not started (run it again when the group's jobs have ended, or raise instance_limit in the blueprint)`,
        };
      }
      announce(gate, `${analysis}/${group.name}`, `${limit} reached: a job waits for a slot (up to ${Math.round(waitMs / 1000)} s)`);
    }
    // Without a limit, a slot number was only taken meanwhile by another runner: ask again soon.
    await sleep(group.instance_limit === undefined ? 20 : Math.min(pollMs, Math.max(0, giveUp - Date.now())), undefined, {
      signal: gate.signal,
    }).catch(() => {});
  }
}

/** How often a job gives way to jobs admitted at the same moment before it is refused with them counted. */
const CONTENTION_RETRIES = 5;

/** Whether slot `a` was taken before `b` (by time, then by id): the order in which contenders yield. */
function slotPrecedes(a: GroupSlot, b: GroupSlot): boolean {
  return a._id !== b._id && (a.taken < b.taken || (a.taken === b.taken && a._id < b._id));
}

function noop(): void {}

/**
 * Whether the job's own slot may be taken over: not while another runner's claim on the job is
 * live (it may be running it, with that slot). Otherwise the runner of a lapsed claim is named, so
 * its slot is taken over even before the slot's own lease lapses: the two leases renew apart.
 */
async function adoption(job: PreparedJob, gate: GroupGate): Promise<SlotRequest['adopt']> {
  const record = await gate.db.get(job.identity);
  const lease = record?.status === 'running' ? record.lease : undefined;
  if (lease && Date.parse(lease.expires) > Date.now() && !sameOwner(lease.owner, gate.owner)) return undefined;
  return lease ? { deadOwner: lease.owner } : {};
}

function announce(gate: GroupGate, key: string, line: string): void {
  const last = announced.get(key) ?? 0;
  if (Date.now() - last < ANNOUNCE_EVERY_MS) return;
  announced.set(key, Date.now());
  (gate.note ?? ((text: string) => process.stderr.write(`caas: ${text}\n`)))(line);
}

/**
 * Renews the slot's lease at a third of its length until the job leaves; then gives the slot back
 * when the job is settled, or leaves it to lapse (with its machine hold) when a machine may run on.
 */
function keepSlot(gate: GroupGate, slot: GroupSlot): (outcome: SlotOutcome) => Promise<void> {
  let held = true;
  const timer = setInterval(
    () => {
      // A lost slot lapsed with the claim's lease (the same length): another runner takes the job over, with a slot of its own.
      void gate.db.renewSlot(slot._id, gate.owner, gate.leaseMs).then(
        (still) => {
          if (!still) held = false;
        },
        () => {},
      );
    },
    Math.max(50, Math.floor(gate.leaseMs / 3)),
  );
  return async (outcome) => {
    clearInterval(timer);
    if (held && outcome === 'recorded') await gate.db.releaseSlot(slot._id, gate.owner).catch(() => {});
  };
}

/** One row of `caas budget`: a group of an analysis and its usage now. */
export interface BudgetRow extends GroupUsage {
  /** Jobs running under a live lease in the group (what runs, whether or not the group takes slots). */
  running: number;
}

/** The budget table of `caas budget`: every group of every analysis given (or only `group`), read-only. */
export async function budgetRows(
  db: MetadataStore,
  analyses: readonly Pick<Analysis, 'name' | 'blueprint'>[],
  options: { group?: string; now?: Date } = {},
): Promise<BudgetRow[]> {
  const now = options.now ?? new Date();
  // One pass over the running records for every group.
  const running = new Map<string, number>();
  for await (const record of db.find({ status: 'running' })) {
    if (!record.job || !record.lease || Date.parse(record.lease.expires) <= now.getTime()) continue;
    const key = `${record.analysis.name}/${record.job.group}`;
    running.set(key, (running.get(key) ?? 0) + 1);
  }
  const rows: BudgetRow[] = [];
  for (const analysis of analyses) {
    for (const group of analysis.blueprint.groups) {
      if (options.group !== undefined && group.name !== options.group) continue;
      const usage = await groupUsage(db, analysis.name, group, now);
      rows.push({ ...usage, running: running.get(`${analysis.name}/${group.name}`) ?? 0 });
    }
  }
  return rows;
}

/**
 * The plan's word on budgets and limits, read once per group of a plan: the RUN entries of a group
 * whose budget is reached now become REFUSED (what a runner would answer when it came to them), and
 * those of a group whose instance_limit is reached say that they will wait for a slot. A budget the
 * batch itself would use up is only found as the jobs start: the plan knows no job's runtime.
 */
export class PlanBudgets {
  private readonly usage = new Map<string, Promise<GroupUsage>>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly db: MetadataStore,
    private readonly warn: (message: string) => void,
    private readonly now = new Date(),
  ) {}

  async review(entries: readonly PlanEntry[]): Promise<PlanEntry[]> {
    const reviewed: PlanEntry[] = [];
    for (const entry of entries) reviewed.push(entry.action === 'RUN' && entry.job ? await this.reviewRun(entry, entry.job) : entry);
    return reviewed;
  }

  private async reviewRun(entry: PlanEntry, job: PreparedJob): Promise<PlanEntry> {
    const { name: analysis, blueprint } = job.analysis;
    const group = blueprint.groups.find((g) => g.name === job.group);
    if (!group || (group.instance_limit === undefined && group.budget === undefined)) return entry;
    const instanceType = job.input.instance_type ?? blueprint.instance_type;
    if (group.budget && blueprint.prices[instanceType] === undefined) this.warnUnpriced(analysis, group.name, instanceType);
    const key = `${analysis}/${group.name}`;
    let usage = this.usage.get(key);
    if (!usage) {
      usage = groupUsage(this.db, analysis, group, this.now);
      this.usage.set(key, usage);
    }
    const found = await usage;
    const refused = budgetRefusal(found);
    if (refused) return { action: 'REFUSED', where: entry.where, job, ...(entry.record ? { record: entry.record } : {}), reason: refused };
    const wait = slotWait(found);
    return wait ? { ...entry, reason: entry.reason ? `${entry.reason}; ${wait}` : wait } : entry;
  }

  private warnUnpriced(analysis: string, group: string, instanceType: string): void {
    const key = `${analysis}/${group}/${instanceType}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(
      `group "${group}" of ${analysis} has a budget, but its blueprint's prices list no ${instanceType}: its jobs count as costing nothing`,
    );
  }
}
