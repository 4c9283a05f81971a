import { z } from 'zod';

export const CodeVersion = z
  .object({
    url: z.string().nullable().describe('Remote URL of the repository holding the analysis, or null without a remote'),
    commit: z.string().regex(/^[0-9a-f]{40,64}$/),
    dirty: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional()
      .describe('sha256 of the uncommitted diff (--allow-dirty)'),
  })
  .strict();
export type CodeVersion = z.infer<typeof CodeVersion>;

export const PreImageInput = z
  .object({
    asset_id: z.string(),
    name: z.string(),
    location: z.string(),
    files: z.array(z.object({ url: z.string(), etag: z.string().optional(), size: z.number().optional() }).strict()).optional(),
    listing: z
      .array(z.object({ url: z.string(), etag: z.string(), size: z.number() }).strict())
      .optional()
      .describe('an input given as a folder (no files): what the folder held when the job was prepared'),
  })
  .strict();

/** Everything that determines a result. identity = sha256(RFC 8785 canonical JSON of this). */
export const PreImage = z
  .object({
    v: z.literal(1),
    analysis: z.object({ name: z.string(), version: z.string() }).strict(),
    code: CodeVersion,
    parameters: z.record(z.string(), z.unknown()),
    inputs: z.array(PreImageInput),
    output: z.string().describe('scheme://bucket/group where the results go'),
  })
  .strict();
export type PreImage = z.infer<typeof PreImage>;

export const Identity = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 hex identity');
