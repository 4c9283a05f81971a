import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../cli/program.ts';
import { type DocCommand, docCommands } from './support/docs-commands.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The README and every Markdown file under docs/, as paths relative to the project. */
function docFiles(): string[] {
  const docs = readdirSync(path.join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => path.join('docs', file))
    .sort();
  return ['README.md', ...docs];
}

const commands: DocCommand[] = docFiles().flatMap((file) => docCommands(file, readFileSync(path.join(ROOT, file), 'utf8')));
/** A placeholder such as <id> or <file>:<line> stands for a value the reader fills in: such a line cannot be parsed as written. */
const PLACEHOLDER = /<[A-Za-z][\w.-]*>/;
const withPlaceholders = commands.filter((c) => PLACEHOLDER.test(c.text));
const concrete = commands.filter((c) => !PLACEHOLDER.test(c.text));

/** Thrown from the preAction hook: the command line parsed, and no action runs. */
class Parsed extends Error {}

/** Why `caas <argv>` does not parse, or undefined when it does (an action was reached, or --help / --version). */
async function parseProblem(argv: readonly string[]): Promise<string | undefined> {
  const program = buildProgram();
  const quiet = (command: Command): void => {
    command.exitOverride();
    command.configureOutput({ writeOut: () => {}, writeErr: () => {} });
    for (const sub of command.commands) quiet(sub);
  };
  quiet(program);
  program.hook('preAction', () => {
    throw new Parsed();
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 'parsed, but no command was chosen';
  } catch (error) {
    if (error instanceof Parsed) return undefined;
    if (error instanceof CommanderError && error.exitCode === 0) return undefined;
    return (error as Error).message;
  }
}

describe('the commands in the README and docs/', () => {
  it(`parse with caas's own command line (${concrete.length} commands)`, async () => {
    const failures: string[] = [];
    for (const command of concrete) {
      const problem = await parseProblem(command.argv);
      if (problem) failures.push(`${command.file}:${command.line}: ${command.text}\n    ${problem}`);
    }
    expect(failures.join('\n')).toBe('');
    // Enough to know the extraction found the docs' commands, not next to none.
    expect(concrete.length).toBeGreaterThanOrEqual(30);
  });

  it('hold no <placeholder> a reader would have to fill in: a line that cannot run as written is not checked', () => {
    const lines = withPlaceholders.map((c) => `${c.file}:${c.line} holds ${PLACEHOLDER.exec(c.text)?.[0]}: ${c.text}`);
    expect(lines.join('\n')).toBe('');
  });

  it('and the examples of every --help text parse too', async () => {
    const examples: DocCommand[] = [];
    const collect = (command: Command, name: string): void => {
      let help = '';
      command.configureOutput({ writeOut: (text) => (help += text), writeErr: () => {} });
      command.outputHelp();
      // The "$ caas …" lines of a help text, as the console block a reader would copy them from.
      const lines = help.split('\n').filter((line) => line.trimStart().startsWith('$ '));
      examples.push(...docCommands(`caas ${name}--help`, `\`\`\`console\n${lines.map((l) => l.trim()).join('\n')}\n\`\`\`\n`));
      for (const sub of command.commands) collect(sub, `${name}${sub.name()} `);
    };
    collect(buildProgram(), '');
    const failures: string[] = [];
    for (const example of examples) {
      const problem = await parseProblem(example.argv);
      if (problem) failures.push(`${example.file}: ${example.text}\n    ${problem}`);
    }
    expect(failures.join('\n')).toBe('');
    expect(examples.length).toBeGreaterThanOrEqual(20);
  });

  it('are found the way a shell splits them', () => {
    const markdown = [
      'Text with `caas run x` inline is not a command.',
      '```sh',
      'caas dispatch --query \'{"subject.subject_id":"774659"}\' --analysis unit-filter \\',
      '  --params params.json > jobs.jsonl          # a comment',
      'CAAS_ANALYSES=$PWD/analyses npx caas run jobs.jsonl --execute && caas query --status failed | head -3',
      'node bin/caas.js show "f8cb\\"318e" 2>&1 < /dev/null; npm run caas -- schema record',
      'cat > blueprint.json <<EOF',
      'caas inside a here-document is data',
      'EOF',
      'echo "$(caas query --json)" | git log',
      '```',
      '```console',
      '$ caas why jobs.jsonl:1',
      'caas: output lines are not commands',
      '$ caas watch --bucket mock-wait \\',
      '    --once',
      '```',
      '```json',
      '{"caas": "run"}',
      '```',
    ].join('\n');
    const found = docCommands('x.md', markdown);
    // A failure names the command as written, up to its last word: its comment is left out.
    expect(found[0]?.text).toBe(
      `caas dispatch --query '{"subject.subject_id":"774659"}' --analysis unit-filter \\\n  --params params.json > jobs.jsonl`,
    );
    expect(found.map((c) => [c.line, c.argv])).toEqual([
      [3, ['dispatch', '--query', '{"subject.subject_id":"774659"}', '--analysis', 'unit-filter', '--params', 'params.json']],
      [5, ['run', 'jobs.jsonl', '--execute']],
      [5, ['query', '--status', 'failed']],
      [6, ['show', 'f8cb"318e']],
      [6, ['schema', 'record']],
      [10, ['query', '--json']],
      [13, ['why', 'jobs.jsonl:1']],
      [15, ['watch', '--bucket', 'mock-wait', '--once']],
    ]);
  });

  it('fail when a command is broken: an unknown option, a missing argument, a bad value', async () => {
    expect(await parseProblem(['run', 'jobs.jsonl', '--execute'])).toBeUndefined();
    expect(await parseProblem(['query', '--help'])).toBeUndefined();
    expect(await parseProblem(['run', 'jobs.jsonl', '--exceute'])).toMatch(/unknown option '--exceute'/);
    expect(await parseProblem(['show'])).toMatch(/missing required argument/);
    expect(await parseProblem(['run', 'jobs.jsonl', '--concurrency', 'two'])).toMatch(/--concurrency expects a whole number/);
    expect(await parseProblem(['dispatch', '...', '--analysis', 'unit-filter'])).toMatch(/too many arguments/);
    expect(await parseProblem(['rerun', 'jobs.jsonl'])).toMatch(/unknown command 'rerun'/);
  });
});
