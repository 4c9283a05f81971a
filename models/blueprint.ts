import { z } from 'zod';
import { CAAS_SETTINGS } from './caas-settings.ts';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** What the analysis process sees beyond the explicit environment the agent gives every job. */
export const AnalysisEnvironment = z
  .object({
    set: z
      .record(z.string().regex(ENV_NAME, 'an environment variable name'), z.string())
      .default({})
      .describe('variables set to these values'),
    pass: z
      .array(
        z
          .string()
          .regex(ENV_NAME, 'an environment variable name')
          .refine((name) => !CAAS_SETTINGS.test(name), 'a caas setting, which never reaches an analysis'),
      )
      .default([])
      .describe("variables passed through from the agent's own environment when set there"),
  })
  .strict();
export type AnalysisEnvironment = z.infer<typeof AnalysisEnvironment>;

/**
 * Where `--compute batch` submits the analysis' jobs. The container image comes from the job
 * definition: it must hold bash, Node >= 20.19 and caas at /opt/caas (after `npm ci`), like the AMI.
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

/** Per-analysis deployment description (NeuroCAAS stack config). */
export const Blueprint = z
  .object({
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (lowercase, digits, "." and "-")'),
    region: z.string().default('us-east-1'),
    ami: z
      .string()
      .regex(/^ami-[0-9a-f]+$/, 'an AMI id like ami-0123456789abcdef0')
      .optional(),
    instance_type: z.string().default('t3.micro'),
    allowed_instance_types: z.array(z.string()).default([]),
    iam_instance_profile: z.string().optional(),
    subnet_id: z.string().optional(),
    security_group_ids: z.array(z.string()).default([]),
    volume_gb: z.number().int().min(8).max(16384).default(30),
    max_runtime_minutes: z.number().positive().default(60),
    deploy_limit: z.number().int().positive().default(10),
    log_limit_mb: z
      .number()
      .positive()
      .default(64)
      .describe('per log (stdout, stderr): a longer log keeps its first and last halves, and the status and certificate say what was cut'),
    environment: AnalysisEnvironment.default({ set: {}, pass: [] }),
    batch: BatchSection.optional().describe('for --compute batch: the queue and job definition the jobs go to'),
    groups: z.array(z.object({ name: z.string().min(1), users: z.array(z.string()).optional() }).strict()).default([{ name: 'caas' }]),
  })
  .strict()
  .refine((b) => b.allowed_instance_types.length === 0 || b.allowed_instance_types.includes(b.instance_type), {
    message: 'instance_type must be one of allowed_instance_types',
    path: ['instance_type'],
  });
export type Blueprint = z.infer<typeof Blueprint>;
