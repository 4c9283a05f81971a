import { z } from 'zod';
import { timestampProblem } from './bucket-contract.ts';

/** NeuroCAAS submit file: {group}/submissions/{timestamp}_submit.json */
export const SubmitFile = z
  .object({
    dataname: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).describe('Key(s) under {group}/inputs/ or URL(s)'),
    configname: z.string().min(1).describe('Key under {group}/configs/'),
    timestamp: z
      .string()
      .superRefine((timestamp, ctx) => {
        const problem = timestampProblem(timestamp);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .describe('names the results folder job__{bucket}_{timestamp}: any text without "/", "\\", "..", "~" or control characters'),
    instance_type: z.string().optional(),
  })
  .strict();
export type SubmitFile = z.infer<typeof SubmitFile>;
