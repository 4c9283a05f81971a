import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CaasError } from '../models/caas-error.ts';
import { describeIssues } from '../models/issues.ts';
import { type ServiceToken, TokensFile } from '../models/service-token.ts';

/** The tokens file or CAAS_TOKENS cannot be used: the service does not start (exit 2). */
export class TokensError extends CaasError {}

/** Who a request is: a group's token, or an admin (group null), which sees every group. */
export interface Principal {
  name: string;
  group: string | null;
}

/** With no tokens configured, the one user is whoever reaches 127.0.0.1: everything is theirs. */
export const LOOPBACK_ADMIN: Principal = { name: 'loopback (no tokens configured)', group: null };

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The tokens file, or none when it does not exist and need not (the default tokens.json in --home);
 * a file named on purpose (`mustExist`) that is missing, or a file that is not one, is refused with
 * what is wrong: a typo in --tokens must not start a server with no tokens.
 */
export async function readTokensFile(file: string, options: { mustExist?: boolean } = {}): Promise<ServiceToken[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!options.mustExist) return [];
      throw new TokensError(
        `${file}: no such tokens file (named by --tokens or CAAS_TOKENS_FILE); make it with caas serve token add --tokens ${file} --group <group>, or name none to use tokens.json in --home`,
      );
    }
    throw new TokensError(`${file}: cannot read the tokens file (${(error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TokensError(`${file}: not JSON (${(error as Error).message}); expected {"tokens": [...]} as caas serve token add writes it`);
  }
  const tokens = TokensFile.safeParse(parsed);
  if (!tokens.success) throw new TokensError(`${file}: ${describeIssues(tokens.error)}`);
  return tokens.data.tokens;
}

/**
 * CAAS_TOKENS: `group:sha256` entries separated by commas (`*:sha256` for an admin), hashes only,
 * so a token never sits in an environment in the clear either.
 */
export function tokensFromEnv(text: string | undefined): ServiceToken[] {
  if (text === undefined || text.trim() === '') return [];
  return text.split(',').map((entry, i) => {
    const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*|\*):([0-9a-f]{64})\s*$/.exec(entry);
    if (!match)
      throw new TokensError(
        `CAAS_TOKENS entry ${i + 1}: expected group:sha256 (or *:sha256 for an admin), the sha256 as 64 lowercase hex digits; caas serve token hash prints it`,
      );
    const group = match[1] === '*' ? null : match[1]!;
    return { name: `CAAS_TOKENS[${i + 1}]`, group, sha256: match[2]!, created: '' };
  });
}

/** The configured tokens, looked up by hash in constant time per candidate. */
export class TokenRing {
  constructor(readonly tokens: readonly ServiceToken[]) {}

  get empty(): boolean {
    return this.tokens.length === 0;
  }

  /** The principal of an `Authorization: Bearer …` header, or undefined for none or an unknown token. */
  authenticate(header: string | undefined): Principal | undefined {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
    if (!token) return undefined;
    const given = Buffer.from(tokenHash(token), 'hex');
    let found: ServiceToken | undefined;
    for (const candidate of this.tokens) {
      if (timingSafeEqual(given, Buffer.from(candidate.sha256, 'hex'))) found = candidate;
    }
    return found ? { name: found.name, group: found.group } : undefined;
  }
}

/** A new token: 32 random bytes, base64url, with a prefix that says what it is where it leaks. */
export function newToken(): string {
  return `caas_${randomBytes(32).toString('base64url')}`;
}

/**
 * Adds a token to the tokens file (created 0600), replacing the file whole so a reader never sees
 * it half written. Returns the token, which exists nowhere else: the file keeps its hash.
 */
export async function addToken(file: string, entry: { name: string; group: string | null }): Promise<string> {
  const tokens = await readTokensFile(file);
  if (tokens.some((t) => t.name === entry.name))
    throw new TokensError(`${file}: a token named "${entry.name}" exists; pick another --name`);
  const token = newToken();
  const next: TokensFile = {
    tokens: [...tokens, { name: entry.name, group: entry.group, sha256: tokenHash(token), created: new Date().toISOString() }],
  };
  const parsed = TokensFile.safeParse(next);
  if (!parsed.success) throw new TokensError(describeIssues(parsed.error));
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(parsed.data, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, file);
  return token;
}

/** Removes the token with this name; false when there is none. */
export async function removeToken(file: string, name: string): Promise<boolean> {
  const tokens = await readTokensFile(file);
  const kept = tokens.filter((t) => t.name !== name);
  if (kept.length === tokens.length) return false;
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify({ tokens: kept }, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
  return true;
}
