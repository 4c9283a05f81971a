import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, open, rm } from 'node:fs/promises';
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
 * entries go to a JSONL file, read back in order when the jobs run. The file is unlinked as soon as
 * it is opened, so it is gone whatever becomes of the process (a second Ctrl-C, a crash): it holds
 * every spilled job's inputs and parameters. Each job's analysis and code state, shared by all its
 * jobs, are kept once, by folder. The record that made a RUN a retry is not kept: executing needs
 * the job only, and the claim reads the record again.
 */
export class RunList {
  private memory: PlanEntry[] = [];
  private file: FileHandle | undefined;
  private spilled = 0;
  /** The analyses of the listed jobs, with their code state, by folder. */
  readonly analyses = new Map<string, { analysis: Analysis; code: CodeState }>();
  /** The buckets the listed jobs write to. */
  readonly buckets = new Set<string>();

  /** `dir`: where the file is made (and at once unlinked); default the system's temporary folder. */
  constructor(private readonly dir: string = tmpdir()) {}

  get size(): number {
    return this.spilled + this.memory.length;
  }

  /** How many entries wait in the file rather than in memory. */
  get inFile(): number {
    return this.spilled;
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
    if (this.file && this.spilled > 0) {
      const input = this.file.createReadStream({ start: 0, encoding: 'utf8', autoClose: false });
      const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
      for await (const line of lines) if (line) yield this.revive(JSON.parse(line) as SpilledEntry);
    }
    yield* this.memory;
  }

  async close(): Promise<void> {
    this.memory = [];
    await this.file?.close();
    this.file = undefined;
  }

  private async spill(): Promise<void> {
    if (!this.file) {
      const folder = await mkdtemp(path.join(this.dir, 'caas-run-list-'));
      try {
        this.file = await open(path.join(folder, 'run.jsonl'), 'a+');
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    }
    const lines = this.memory.map((entry) => {
      const { analysis, code: _, ...job } = entry.job!;
      const spilled: SpilledEntry = { where: entry.where, job: { ...job, analysis: analysis.dir } };
      if (entry.reason) spilled.reason = entry.reason;
      return `${JSON.stringify(spilled)}\n`;
    });
    await this.file.appendFile(lines.join(''));
    this.spilled += this.memory.length;
    this.memory = [];
  }

  private revive(spilled: SpilledEntry): PlanEntry {
    const shared = this.analyses.get(spilled.job.analysis)!;
    const job: PreparedJob = { ...spilled.job, analysis: shared.analysis, code: shared.code };
    return { action: 'RUN', where: spilled.where, job, ...(spilled.reason ? { reason: spilled.reason } : {}) };
  }
}
