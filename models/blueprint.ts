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

/** A user group of the analysis (NeuroCAAS's affiliate): its folder in the bucket, who may submit, what it may use. */
export const BlueprintGroup = z
  .object({
    name: z.string().min(1),
    users: z
      .array(z.string())
      .optional()
      .describe(
        'who may submit in this group, where the submitter is known (absent: anyone): names given with --user, IAM user ids (AIDA...), role ids (AROA..., every session of the role)',
      ),
    instance_limit: z.number().int().positive().optional().describe("at most this many of the group's jobs run at once"),
    budget: z
      .object({
        usd: z.number().nonnegative().describe('spending cap in US dollars, estimated from instance type x runtime'),
        period: z
          .enum(['day', 'week', 'month', 'total'])
          .default('month')
          .describe('the cap is per calendar period (UTC), or for all time'),
      })
      .strict()
      .optional(),
  })
  .strict();
export type BlueprintGroup = z.infer<typeof BlueprintGroup>;

/**
 * Per-analysis deployment description (NeuroCAAS stack config); its fields are the EC2 launcher's
 * settings, as NeuroCAAS's are. Other launchers keep theirs in a section of their own, a top-level
 * key this model lets through: only the launcher registry (backends/compute/index.ts) knows the
 * sections, and it refuses any other key wherever an analysis is loaded to run.
 */
export const Blueprint = z
  .looseObject({
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
    groups: z.array(BlueprintGroup).default([{ name: 'caas' }]),
    prices: z
      .record(z.string(), z.number().nonnegative())
      .default({})
      .describe('USD per hour of each instance type, for the spending caps (a type not listed costs nothing)'),
  })
  .refine((b) => b.allowed_instance_types.length === 0 || b.allowed_instance_types.includes(b.instance_type), {
    message: 'instance_type must be one of allowed_instance_types',
    path: ['instance_type'],
  });
export type Blueprint = z.infer<typeof Blueprint>;
