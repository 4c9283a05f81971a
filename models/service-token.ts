import { z } from 'zod';
import { FOLDER_NAME } from './bucket-contract.ts';

/**
 * A bearer token of `caas serve`, as kept at rest: only its sha256 (the token itself is 32 random
 * bytes, printed once by `caas serve token add`; a hash of that much randomness cannot be reversed
 * by guessing). `group` is the one group the token submits into and sees; null is an admin token.
 */
export const ServiceToken = z
  .object({
    name: z.string().min(1).max(100),
    group: z.string().regex(FOLDER_NAME, 'a group name: letters, digits, ".", "_" or "-"').nullable(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'the sha256 of the token, 64 lowercase hex digits'),
    created: z.string(),
  })
  .strict();
export type ServiceToken = z.infer<typeof ServiceToken>;

export const TokensFile = z.object({ tokens: z.array(ServiceToken) }).strict();
export type TokensFile = z.infer<typeof TokensFile>;
