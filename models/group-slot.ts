import { z } from 'zod';
import { Owner } from './record.ts';

/**
 * One of a user group's places to run a job, in the metadata DB's `slots`: a group with an
 * instance_limit has that many, numbered from 0; a group with only a budget has as many as it
 * runs. Taking one is an insert-if-absent on `_id`, so runners in any number of processes never
 * hold more than the limit; it carries a lease its runner renews like a claim's. The slot belongs
 * to the job, not only to its runner: from admission it is also held until the job's machine must
 * be gone (`machine_until`), so when a runner dies while its EC2 instance or Batch job still runs,
 * the slot does not free a place for another machine; a runner that takes the job over takes the
 * slot with it, and it frees when that runner records the job or at the machine's hard stop.
 */
export const GroupSlot = z
  .object({
    _id: z.string().describe('{analysis}/{group}/{n}'),
    analysis: z.string(),
    group: z.string(),
    n: z.number().int().nonnegative(),
    identity: z.string().describe('the job the slot was taken for'),
    owner: Owner,
    taken: z.string(),
    expires: z.string().describe("the runner's lease: renewed while it lives"),
    machine_until: z
      .string()
      .optional()
      .describe(
        "when the job's machine must be gone (admission + max runtime + boot): the slot stays held until then even after its runner's lease lapsed",
      ),
    worst_usd: z
      .number()
      .nonnegative()
      .describe("what the job can cost at most (its instance type's price x the max runtime): counted against the budget while it runs"),
    instance_type: z.string(),
  })
  .strict();
export type GroupSlot = z.infer<typeof GroupSlot>;

export function slotId(analysis: string, group: string, n: number): string {
  return `${analysis}/${group}/${n}`;
}
