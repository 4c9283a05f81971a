import { createReadStream } from 'node:fs';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Analysis } from '../models/analysis.ts';
import type { CodeState } from './code-version.ts';
import type { PlanEntry } from './gate.ts';
import type { PreparedJob } from './prepare.ts';

/** How many RUN entries stay in memory before they go to the list's file: one gate chunk's worth. */
const IN_MEMORY = 1000;

/** A RUN entry as it is written to the file: its job without the analysis and code state, which every job of an analysis shares. */
interface SpilledEntry {
  where: string;
  reason?: string;
  job: Omit<PreparedJob, 'analysis' | 'code'> & { analysis: string };
}

/**
 * The jobs a plan says to run, kept from planning until they run, in bounded memory: a batch of
 * 100,000 jobs must not hold 100,000 prepared jobs. Up to a chunk stays in memory; beyond that,
 * entries go to a JSONL file in a temporary folder, read back in order when the jobs run, and removed
 * by `close`. Each job's analysis and code state, shared by all its jobs, are kept once, by folder.
 * The record that made a RUN a retry is not kept: executing needs the job only, and the claim reads
 * the record again.
 */
export class RunList {
  private memory: PlanEntry[] = [];
  private folder: string | undefined;
  private spilled = 0;
  /** The analyses of the listed jobs, with their code state, by folder. */
  readonly analyses = new Map<string, { analysis: Analysis; code: CodeState }>();
  /** The buckets the listed jobs write to. */
  readonly buckets = new Set<string>();

  get size(): number {
    return this.spilled + this.memory.length;
  }

  async add(entries: readonly PlanEntry[]): Promise<void> {
    for (const entry of entries) {
      const job = entry.job;
      if (entry.action !== 'RUN' || !job) continue;
      if (!this.analyses.has(job.analysis.dir)) this.analyses.set(job.analysis.dir, { analysis: job.analysis, code: job.code });
      this.buckets.add(job.bucket);
      this.memory.push({ action: 'RUN', where: entry.where, job, ...(entry.reason ? { reason: entry.reason } : {}) });
    }
    if (this.memory.length >= IN_MEMORY) await this.spill();
  }

  /** The entries, in the order they were added. */
  async *entries(): AsyncIterable<PlanEntry> {
    if (this.folder && this.spilled > 0) {
      const lines = createInterface({ input: createReadStream(this.file(), 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
      for await (const line of lines) if (line) yield this.revive(JSON.parse(line) as SpilledEntry);
    }
    yield* this.memory;
  }

  async close(): Promise<void> {
    this.memory = [];
    if (this.folder) await rm(this.folder, { recursive: true, force: true });
    this.folder = undefined;
  }

  private async spill(): Promise<void> {
    this.folder ??= await mkdtemp(path.join(tmpdir(), 'caas-run-list-'));
    const lines = this.memory.map((entry) => {
      const { analysis, code: _, ...job } = entry.job!;
      const spilled: SpilledEntry = { where: entry.where, job: { ...job, analysis: analysis.dir } };
      if (entry.reason) spilled.reason = entry.reason;
      return `${JSON.stringify(spilled)}\n`;
    });
    await appendFile(this.file(), lines.join(''));
    this.spilled += this.memory.length;
    this.memory = [];
  }

  private revive(spilled: SpilledEntry): PlanEntry {
    const shared = this.analyses.get(spilled.job.analysis)!;
    const job: PreparedJob = { ...spilled.job, analysis: shared.analysis, code: shared.code };
    return { action: 'RUN', where: spilled.where, job, ...(spilled.reason ? { reason: spilled.reason } : {}) };
  }

  private file(): string {
    return path.join(this.folder!, 'run.jsonl');
  }
}
