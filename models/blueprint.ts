import { z } from 'zod';

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
    groups: z.array(z.object({ name: z.string().min(1), users: z.array(z.string()).optional() }).strict()).default([{ name: 'caas' }]),
  })
  .strict()
  .refine((b) => b.allowed_instance_types.length === 0 || b.allowed_instance_types.includes(b.instance_type), {
    message: 'instance_type must be one of allowed_instance_types',
    path: ['instance_type'],
  });
export type Blueprint = z.infer<typeof Blueprint>;
