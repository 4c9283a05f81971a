import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Keeps the fast tier honest. A file under test/unit/ runs in `npm run test:unit`, in seconds, so it
 * may not reach for what makes a test slow: child processes (the CLI, git, the agent), servers and
 * the network, or a database. Temp files are fine. The rule reads each file's imports and a few
 * calls; a test that needs any of these belongs in test/ beside the others.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Modules a unit test may not import: a bare name, or a path from the project root. */
const FORBIDDEN_MODULES: [RegExp, string][] = [
  [/^(node:)?(child_process|cluster)$/, 'starts processes'],
  [/^(node:)?(http|https|http2|net|tls|dgram|dns)$/, 'serves or reaches the network'],
  [/^(better-sqlite3|mongodb|mongodb-memory-server-core|s3rver|simple-git)$/, 'a database, an S3 server or git'],
  [/^fixtures\/(s3rver|mongo)\.ts$/, 'starts s3rver or MongoDB'],
  [/^test\/support\/(workspace|processes|claim-worker)\.ts$/, 'runs the CLI, git or runners'],
  [/^backends\/db\/(sqlite|mongo)\.ts$/, 'a database'],
  [/^backends\/storage\/s3\.ts$/, 'talks to S3'],
  [/^backends\/compute\/(local|inline)\.ts$/, 'starts agent or analysis processes'],
];

/** Calls that do the same through a module a unit test may import. */
const FORBIDDEN_CALLS: [RegExp, string][] = [
  [/\bopenDatabase\(/, 'opens a SQLite file or MongoDB'],
  [/\bopenStore\(\s*['"`]s3/, 'opens an S3 store'],
  [/\bopenLauncher\(/, 'opens a launcher'],
  [/bin\/caas\.js/, 'runs the CLI'],
  [/\bfetch\(/, 'reaches the network'],
  [/\.listen\(/, 'starts a server'],
];

/** Every import, re-export, dynamic import and require in a source text. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bfrom\s+['"]([^'"]+)['"]/g,
    /^\s*import\s+['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]/g,
    /\brequire\(\s*['"]([^'"]+)['"]/g,
  ];
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) found.push(match[1]!);
  return found;
}

/** What a file does that the unit tier forbids, one line each. */
function offences(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const specifier of specifiers(text)) {
    const name = specifier.startsWith('.') ? path.relative(ROOT, path.resolve(path.dirname(file), specifier)) : specifier;
    for (const [pattern, why] of FORBIDDEN_MODULES) if (pattern.test(name)) found.push(`imports ${specifier}: ${why}`);
  }
  text.split('\n').forEach((line, i) => {
    for (const [pattern, why] of FORBIDDEN_CALLS) if (pattern.test(line)) found.push(`line ${i + 1}: ${line.trim()}: ${why}`);
  });
  return found;
}

/** Source files under a folder of the project, skipping dot-folders (bench/.out holds what benchmarks wrote). */
function filesUnder(dir: string, extensions: RegExp): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && extensions.test(entry.name))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .filter(
      (file) =>
        !path
          .relative(ROOT, file)
          .split(path.sep)
          .some((part) => part.startsWith('.')),
    );
}

describe('the unit tier (test/unit/)', () => {
  const files = filesUnder('test/unit', /\.(ts|mts|mjs|js)$/);

  it('holds tests', () => {
    expect(files.filter((file) => file.endsWith('.test.ts')).length).toBeGreaterThan(5);
  });

  it.each(files.map((file) => [path.relative(ROOT, file), file]))(
    '%s starts no process or server, reaches no network, opens no database',
    (_, file) => {
      expect(offences(file)).toEqual([]);
    },
  );

  it('the rule sees what the other tiers do', () => {
    expect(offences(path.join(ROOT, 'test/run.test.ts'))).toEqual(
      expect.arrayContaining([
        'imports node:child_process: starts processes',
        expect.stringMatching(/^imports \.\/support\/workspace\.ts: /),
      ]),
    );
    expect(offences(path.join(ROOT, 'test/storage.conformance.test.ts'))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^imports \.\.\/fixtures\/s3rver\.ts: /), expect.stringMatching(/fetch\(url\)/)]),
    );
    expect(offences(path.join(ROOT, 'test/catalog.test.ts'))).toEqual(expect.arrayContaining([expect.stringMatching(/openDatabase\(/)]));
  });
});

describe('bench/', () => {
  it.each(filesUnder('bench', /\.(ts|mts|mjs|js)$/).map((file) => [path.relative(ROOT, file), file]))(
    '%s imports nothing from test/ (what both share is in fixtures/)',
    (_, file) => {
      const fromTest = specifiers(readFileSync(file, 'utf8')).filter(
        (specifier) =>
          specifier.startsWith('.') && path.relative(ROOT, path.resolve(path.dirname(file), specifier)).startsWith(`test${path.sep}`),
      );
      expect(fromTest).toEqual([]);
    },
  );
});
