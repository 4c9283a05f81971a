import { z } from 'zod';

/**
 * Where `--compute batch` submits the analysis' jobs: the blueprint's `batch` section. Kept apart
 * from batch.ts so the registry can check a blueprint without loading the AWS SDK. The container
 * image comes from the job definition: it must hold bash, Node >= 20.19 and caas at /opt/caas
 * (after `npm ci`), like the AMI.
 */
export const BatchSection = z
  .object({
    job_queue: z.string().min(1).describe('the AWS Batch job queue (name or ARN)'),
    job_definition: z.string().min(1).describe('the job definition (name, name:revision or ARN) whose image holds caas'),
    vcpus: z.number().positive().optional().describe("vCPUs per job, overriding the job definition's"),
    memory_mib: z.number().int().positive().optional().describe("memory per job in MiB, overriding the job definition's"),
  })
  .strict();
export type BatchSection = z.infer<typeof BatchSection>;
