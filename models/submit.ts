import { z } from 'zod';
import { FOLDER_NAME } from './bucket-contract.ts';

/** NeuroCAAS submit file: {group}/submissions/{timestamp}_submit.json */
export const SubmitFile = z
  .object({
    dataname: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).describe('Key(s) under {group}/inputs/ or URL(s)'),
    configname: z.string().min(1).describe('Key under {group}/configs/'),
    timestamp: z.string().regex(FOLDER_NAME, 'letters, digits, ".", "_" or "-" (it names the results folder)'),
    instance_type: z.string().optional(),
  })
  .strict();
export type SubmitFile = z.infer<typeof SubmitFile>;
