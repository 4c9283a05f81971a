import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellQuote } from '../models/shell-quote.ts';

describe('the commands caas prints for a shell', () => {
  it('shellQuote leaves plain words alone and quotes the rest so that a shell gives them back unchanged', () => {
    expect(shellQuote('/data/lab/results')).toBe('/data/lab/results');
    expect(shellQuote('s3://bucket/a=b,c@d%e+f:g')).toBe('s3://bucket/a=b,c@d%e+f:g');
    const awkward = ["lab's buckets", 'a b', '$HOME', '`id`', 'x;y', '*', '', "it's 'quoted'", 'new\nline'];
    for (const text of awkward) {
      expect(shellQuote(text)).not.toBe(text);
      expect(execFileSync('bash', ['-c', `printf %s ${shellQuote(text)}`], { encoding: 'utf8' })).toBe(text);
    }
  });
});
