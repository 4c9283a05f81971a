import { describe, expect, it } from 'vitest';
import { outputPathProblem } from '../../server/service.ts';
import { TokenRing, tokenHash, tokensFromEnv } from '../../server/tokens.ts';

describe('service tokens', () => {
  const ring = new TokenRing([
    { name: 'lab-a', group: 'lab-a', sha256: tokenHash('caas_secret-a'), created: '' },
    { name: 'ops', group: null, sha256: tokenHash('caas_secret-admin'), created: '' },
  ]);

  it('a bearer token maps to its group, an admin token to no group; anything else is nobody', () => {
    expect(ring.authenticate('Bearer caas_secret-a')).toEqual({ name: 'lab-a', group: 'lab-a' });
    expect(ring.authenticate('bearer caas_secret-admin')).toEqual({ name: 'ops', group: null });
    for (const header of [undefined, '', 'Bearer', 'Bearer caas_other', 'Basic caas_secret-a', 'Bearer caas_secret-a extra']) {
      expect(ring.authenticate(header), String(header)).toBeUndefined();
    }
  });

  it('CAAS_TOKENS holds group:sha256 entries, * for an admin; a malformed entry is refused with what is expected', () => {
    const hash = tokenHash('t');
    expect(tokensFromEnv(`lab-a:${hash}, *:${hash}`).map((t) => t.group)).toEqual(['lab-a', null]);
    expect(tokensFromEnv(undefined)).toEqual([]);
    expect(() => tokensFromEnv('lab-a:plaintext-token')).toThrow(/CAAS_TOKENS entry 1: expected group:sha256/);
  });
});

describe('output paths', () => {
  it('stay inside process_results/: no "..", no absolute path, no backslash, no control character', () => {
    expect(outputPathProblem('waited.json')).toBeUndefined();
    expect(outputPathProblem('plots/unit-1.svg')).toBeUndefined();
    for (const bad of ['', '../logs/stdout.txt', 'a/../../b', '/etc/passwd', 'a\\..\\b', 'a//b', './a', 'a\nb']) {
      expect(outputPathProblem(bad), JSON.stringify(bad)).toBeDefined();
    }
  });
});
