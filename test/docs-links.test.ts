import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fencedBlocks } from './support/docs-commands.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const docs = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => path.join('docs', file)),
];

/** The text of a Markdown file outside its code blocks, where links and headings live. */
function prose(file: string): string {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  for (const block of fencedBlocks(lines.join('\n'))) lines.fill('', block.line - 1, block.line - 1 + block.lines.length);
  return lines.join('\n');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

function anchorsOf(file: string): Set<string> {
  return new Set([...prose(file).matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1]!)));
}

describe('the links of the README and docs/', () => {
  it('lead to files that exist, and to headings that exist', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of docs) {
      for (const [, target = ''] of prose(file).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target)) continue;
        checked++;
        const [relative = '', hash] = target.split('#');
        const linked = relative === '' ? file : path.join(path.dirname(file), relative);
        if (!existsSync(path.join(ROOT, linked))) broken.push(`${file}: ${target} (no such file)`);
        else if (hash !== undefined && !anchorsOf(linked).has(hash)) broken.push(`${file}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(20);
  });
});
