import { describe, expect, it } from 'vitest';
import { describeConfigProblem, isYamlName, MAX_YAML_ALIASES, parseConfigText, parseYamlText } from '../../models/config-text.ts';
import { MAX_JSON_DEPTH, untrustedJsonProblem } from '../../models/untrusted-json.ts';

/** The problem `name:line:column: reason` a user reads, or the data. */
function read(text: string, name = 'config.yaml'): unknown {
  const parsed = parseConfigText(name, text);
  return parsed.ok ? parsed.value : describeConfigProblem(name, parsed);
}

/** An alias bomb: each anchor repeats the one before nine times (9^6 leaves from a few hundred bytes). */
const BOMB = ['a: &a [x, x, x, x, x, x, x, x, x]']
  .concat(['b', 'c', 'd', 'e', 'f'].map((name, i) => `${name}: &${name} [${Array(9).fill(`*${'abcde'[i]}`).join(', ')}]`))
  .join('\n');

describe('a YAML config is read as its JSON equivalent', () => {
  it('names ending in .yaml or .yml are YAML; every other name is JSON, as before', () => {
    expect(['c.yaml', 'c.yml', 'C.YAML', 'dir/c.yml'].every(isYamlName)).toBe(true);
    expect(['c.json', 'c', 'c.yaml.json', 'yaml'].some(isYamlName)).toBe(false);
    expect(read('wait: 1\n', 'config.json')).toMatch(/^config\.json: invalid JSON: /);
  });

  it('gives the same data as the JSON a user would write for it', () => {
    const yaml = [
      '# parameters of the analysis',
      'wait: 0.5',
      'fail: false',
      'marker: "ran"',
      'list:',
      '  - 1',
      '  - two',
      'nested: {a: null, b: [true, 2.5e3]}',
      'base: &base {x: 1}',
      'copy: *base',
      '1: numbers as keys are text',
      'yes: stays text in YAML 1.2',
      'octal: 0o17',
      'date: 2001-12-14',
    ].join('\n');
    expect(read(yaml)).toEqual({
      wait: 0.5,
      fail: false,
      marker: 'ran',
      list: [1, 'two'],
      nested: { a: null, b: [true, 2500] },
      base: { x: 1 },
      copy: { x: 1 },
      '1': 'numbers as keys are text',
      yes: 'stays text in YAML 1.2',
      octal: 15,
      date: '2001-12-14',
    });
    expect(read('{"wait": 0, "list": [1, 2]}\n')).toEqual({ wait: 0, list: [1, 2] });
    expect(read('\ufeffwait: 1\n')).toEqual({ wait: 1 });
    expect(read('# nothing but a comment\n')).toBeNull();
  });

  it.each([
    {
      name: 'an unclosed list',
      text: 'wait: 1\nlist: [1, 2\nmarker: x\n',
      says: /^config\.yaml:3:1: invalid YAML: Flow sequence .* end with a \]/,
    },
    { name: 'a key given twice', text: 'wait: 1\nfail: true\nwait: 2\n', says: /^config\.yaml:3:1: invalid YAML: Map keys must be unique/ },
    { name: 'tab indentation', text: 'list:\n\t- 1\n', says: /^config\.yaml:2:1: invalid YAML: Tabs are not allowed as indentation/ },
    {
      name: 'two documents',
      text: 'wait: 1\n---\nwait: 2\n',
      says: /^config\.yaml:2:1: invalid YAML: several documents \(---\): expected one config/,
    },
    {
      name: 'a Python object tag',
      text: 'wait: 1\nobj: !!python/object:os.system {}\n',
      says: /^config\.yaml:2:6: invalid YAML: Unresolved tag/,
    },
    {
      name: 'a list as a key',
      text: '? [a, b]\n: 1\n',
      says: /^config\.yaml:1:3: invalid YAML: a key that is an alias, a list or a mapping/,
    },
    { name: 'an alias as a key', text: 'x: &k wait\n*k : 1\n', says: /^config\.yaml:2:1: invalid YAML: a key that is an alias/ },
    {
      name: 'lists nested 100000 deep',
      text: `extra: ${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      says: new RegExp(`^config\\.yaml:1:\\d+: invalid YAML: nested more than ${MAX_JSON_DEPTH} levels deep`),
    },
    {
      name: 'block lists nested 100 deep',
      text: `${'- '.repeat(100)}1\n`,
      says: /^config\.yaml:1:\d+: invalid YAML: nested more than 64 levels deep/,
    },
    {
      name: 'an alias bomb',
      text: BOMB,
      says: new RegExp(
        `^config\\.yaml: invalid YAML: its aliases expand to too much .*: expected at most ${MAX_YAML_ALIASES} alias expansions`,
      ),
    },
  ])('$name: file:line:column and what is wrong', ({ text, says }) => {
    expect(read(text)).toMatch(says);
  });

  it.each([
    { text: 'wait: .inf\n', says: /^config\.yaml: wait: Infinity is not a JSON number: expected a finite number$/ },
    { text: 'wait: -.inf\n', says: /^config\.yaml: wait: -Infinity is not a JSON number/ },
    { text: 'list: [1, .nan]\n', says: /^config\.yaml: list\.1: NaN is not a JSON number/ },
    {
      text: 'blob: !!binary aGVsbG8=\n',
      says: /^config\.yaml: blob: a Buffer is not JSON data: expected null, true or false, a number, text, a list or a mapping/,
    },
    { text: 'tags: !!set {a, b}\n', says: /^config\.yaml: tags: a Set is not JSON data/ },
    { text: 'pairs: !!omap [{a: 1}]\n', says: /^config\.yaml: pairs: a Map is not JSON data/ },
    { text: '%YAML 1.1\n---\nnested: {when: 2001-12-14}\n', says: /^config\.yaml: nested\.when: a Date is not JSON data/ },
  ])('$text: a value JSON has no form for is refused, naming its path', ({ text, says }) => {
    expect(read(text)).toMatch(says);
  });

  it.each([
    { text: '__proto__: {wait: 5}\n', says: /^__proto__: the key "__proto__" is not allowed/ },
    {
      text: `extra: &a ${'['.repeat(40)}1${']'.repeat(40)}\nmore: ${'['.repeat(40)}*a${']'.repeat(40)}\n`,
      says: /nested more than 64 levels deep/,
    },
  ])('$text: read, then refused by the untrusted-input guards every config goes through, as JSON would be', ({ text, says }) => {
    const parsed = parseYamlText(text);
    expect(parsed.ok).toBe(true);
    expect(untrustedJsonProblem(parsed.ok ? parsed.value : undefined)).toMatch(says);
  });
});
