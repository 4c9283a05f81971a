import { z } from 'zod';

/**
 * The tags a development instance carries (`caas dev launch`). They are its whole state: which
 * analysis it is for, whose it is, and when it stops itself. The instance reads `caas:expiry`
 * back through the instance metadata service, so moving the tag (`caas dev extend`) moves its
 * self-stop, and a development instance has no `caas:identity` tag, so `caas reap` never sees it.
 */
export const DEV_TAGS = {
  /** The analysis; its presence is what makes an instance a development instance. */
  analysis: 'caas:dev',
  owner: 'caas:owner',
  /** ISO time, to the second, at which the instance stops itself. */
  expiry: 'caas:expiry',
  /** The last image `caas dev save` made of it. */
  savedImage: 'caas:saved-image',
} as const;

/** A development instance as `caas dev status --json` prints it. */
export const DevInstance = z
  .object({
    id: z.string(),
    analysis: z.string(),
    owner: z.string(),
    state: z.string().describe('the EC2 state: pending, running, stopping, stopped, shutting-down, terminated'),
    instance_type: z.string().nullable(),
    image: z.string().nullable().describe('the image it was launched from'),
    launched: z.string().nullable(),
    expiry: z.string().nullable().describe('when it stops itself (null when its tag is missing or unreadable)'),
    address: z.string().nullable().describe('public DNS name or IP, else private IP: where to ssh to'),
    saved_image: z.string().nullable().describe('the last image caas dev save made of it'),
  })
  .strict();
export type DevInstance = z.infer<typeof DevInstance>;

/**
 * A test job travels to a development instance as objects under this prefix of the analysis
 * bucket: `.caas/dev/{instance}/{group}/{timestamp}.json` (the agent spec), then `.taken` (who
 * took it: the instance's job loop, or `caas dev test` withdrawing it) and `.done` (the agent's
 * exit). A group name never starts with ".", so no group folder can collide with it.
 */
export const DEV_JOBS_PREFIX = '.caas/dev/';

export function devJobsPrefix(instance: string): string {
  return `${DEV_JOBS_PREFIX}${instance}/`;
}

export interface DevJobKeys {
  spec: string;
  taken: string;
  done: string;
}

export function devJobKeys(instance: string, group: string, timestamp: string): DevJobKeys {
  const base = `${devJobsPrefix(instance)}${group}/${timestamp}`;
  return { spec: `${base}.json`, taken: `${base}.taken`, done: `${base}.done` };
}

/** The keys of the job whose spec is at `specKey`. */
export function devJobKeysOf(specKey: string): DevJobKeys {
  const base = specKey.replace(/\.json$/, '');
  return { spec: specKey, taken: `${base}.taken`, done: `${base}.done` };
}

/** `.taken`: written put-if-absent, so a job is either run by the instance or withdrawn, never both. */
export const DevJobTaken = z
  .object({
    by: z.enum(['instance', 'withdrawn']),
    at: z.string(),
    note: z.string(),
  })
  .strict();
export type DevJobTaken = z.infer<typeof DevJobTaken>;

/** `.done`: the agent exited; with no end.txt in the job folder, the job ended without an answer. */
export const DevJobDone = z
  .object({
    exit_code: z.number().int().nullable(),
    at: z.string(),
  })
  .strict();
export type DevJobDone = z.infer<typeof DevJobDone>;

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h)?$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const;

/** `90s`, `60m`, `1.5h`, or a plain number of minutes, in milliseconds; undefined when it is none of these or not > 0. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * UNIT_MS[(match[2] ?? 'm') as keyof typeof UNIT_MS];
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : undefined;
}

/** The expiry as the tag holds it: ISO time rounded up to the second (the instance's `date -d` reads it). */
export function expiryTag(at: Date): string {
  return new Date(Math.ceil(at.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
