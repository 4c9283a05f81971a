import { z } from 'zod';
import { Owner, Submitter } from './record.ts';

/**
 * queued: waiting for a server to take it; taken: a server holds it (its lease, like a record's,
 * lapses when that server dies, and then any server takes it again); done: a runner answered it
 * (the record says how); cancelled: withdrawn before it ran.
 */
export const QueueState = z.enum(['queued', 'taken', 'done', 'cancelled']);
export type QueueState = z.infer<typeof QueueState>;

/**
 * A job `caas serve` accepted: written to the metadata DB before the service answers 202, so no
 * acceptance lives only in a server's memory. One entry per identity: accepting the same job again
 * while it waits changes nothing.
 */
export const QueuedJob = z
  .object({
    _id: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .describe('the identity the job had when it was accepted'),
    analysis: z.string(),
    group: z.string(),
    state: QueueState,
    input: z.unknown().describe('the job input as accepted (validated then, and prepared again when it runs)'),
    where: z.string().describe('where in the request it came from, for messages'),
    submitter: Submitter.optional(),
    queued: z.string().describe('when it was accepted (ISO 8601); jobs are taken oldest first'),
    not_before: z.string().describe('not taken before this moment (a job running elsewhere is looked at again later)'),
    taken: z.object({ owner: Owner, expires: z.string() }).strict().nullable(),
    tries: z.number().int().nonnegative().describe('how many times a server took it'),
    cancel: z
      .object({ reason: z.string(), at: z.string() })
      .strict()
      .nullable()
      .describe('a cancellation asked for while a server held it: that server stops the attempt'),
    outcome: z.string().nullable().describe("the runner's outcome: succeeded, failed, skipped, ..."),
    reason: z.string().nullable(),
    updated: z.string(),
  })
  .strict();
export type QueuedJob = z.infer<typeof QueuedJob>;

/** How a server settles a job it took: answered (done), or back in the queue until `notBefore`. */
export interface QueueSettlement {
  state: 'done' | 'queued' | 'cancelled';
  outcome: string;
  reason: string;
  notBefore?: Date;
}
