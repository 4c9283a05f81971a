/**
 * The `caas …` command lines of the docs, as a shell would split them. Only what the docs need of
 * POSIX sh is understood (quotes, backslashes, comments, pipes and lists, redirections, here-documents,
 * `$(…)`), without expanding anything: `"$CAAS_DB"` stays that text, which is all a parse needs.
 */

/** One fenced code block of a Markdown file. */
export interface FencedBlock {
  lang: string;
  /** 1-based line of the block's first content line. */
  line: number;
  lines: string[];
}

/** One simple command of a shell script: its words, after quotes were removed. */
export interface SimpleCommand {
  /** 1-based line the command starts on. */
  line: number;
  /** The command as written (continuation lines included). */
  text: string;
  words: string[];
}

/** A `caas …` command found in the docs. */
export interface DocCommand {
  file: string;
  line: number;
  text: string;
  /** The arguments after `caas`. */
  argv: string[];
}

/** Blocks whose lines are commands (sh, bash, shell) or a terminal transcript (console: `$ ` lines). */
export const SHELL_LANGS = new Set(['sh', 'bash', 'shell', 'console']);

export function fencedBlocks(markdown: string): FencedBlock[] {
  const blocks: FencedBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[2]!;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j]!.trimStart().startsWith(fence)) body.push(lines[j++]!);
    blocks.push({ lang: open[3]!.toLowerCase(), line: i + 2, lines: body });
    i = j;
  }
  return blocks;
}

/**
 * The script a block holds: a console transcript keeps its `$ ` lines (and their continuation
 * lines) and blanks the output, so that line numbers still match the file.
 */
export function scriptOf(block: FencedBlock): string {
  const kept: string[] = [];
  let continued = false;
  for (const line of block.lines) {
    const prompt = /^\s*\$ /.exec(line);
    if (prompt) kept.push(line.slice(prompt[0].length));
    else if (continued || block.lang !== 'console') kept.push(line);
    else kept.push('');
    continued = (prompt !== null || continued) && /\\$/.test(line);
  }
  return kept.join('\n');
}

const OPERATORS = ['&&', '||', ';;', '|&', '|', '&', ';', '(', ')'];
const REDIRECTS = ['<<<', '<<-', '<<', '>>', '>&', '<&', '&>', '>|', '<>', '>', '<'];

/** Splits a script into simple commands. Throws on an unterminated quote or `$(`. */
export function parseScript(script: string, firstLine = 1): SimpleCommand[] {
  const commands: SimpleCommand[] = [];
  let i = 0;
  let line = firstLine;
  let words: string[] = [];
  let word: string | undefined;
  let start = 0;
  let end = 0;
  let startLine = line;
  let dropNextWord = false;
  let pendingHeredocs: { delimiter: string; stripTabs: boolean }[] = [];
  let heredocNext: { stripTabs: boolean } | undefined;

  const endWord = () => {
    if (word === undefined) return;
    if (heredocNext) {
      pendingHeredocs.push({ delimiter: word, stripTabs: heredocNext.stripTabs });
      heredocNext = undefined;
    } else if (dropNextWord) dropNextWord = false;
    else {
      if (words.length === 0) {
        start = wordStart;
        startLine = wordLine;
      }
      words.push(word);
    }
    // The command's text runs to its last word (a redirection's target included), not its comment.
    if (words.length > 0) end = i;
    word = undefined;
  };
  let wordStart = 0;
  let wordLine = line;
  const addToWord = (text: string, at = i, atLine = line) => {
    if (word === undefined) {
      word = '';
      wordStart = at;
      wordLine = atLine;
    }
    word += text;
  };
  const endCommand = () => {
    endWord();
    if (words.length > 0) commands.push({ line: startLine, text: script.slice(start, end), words });
    words = [];
  };
  /** The text of a `$(…)` starting at i (on the `$`), its commands parsed too; returns the index after it. */
  const substitution = (from: number): number => {
    let depth = 0;
    let j = from + 1;
    for (; j < script.length; j++) {
      const c = script[j];
      if (c === '\\') j++;
      else if (c === "'") j = script.indexOf("'", j + 1);
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) break;
      if (j < 0) break;
    }
    if (j < 0 || j >= script.length) throw new Error(`line ${line}: unterminated $(`);
    const inner = script.slice(from + 2, j);
    commands.push(...parseScript(inner, line));
    line += inner.split('\n').length - 1;
    return j + 1;
  };

  while (i < script.length) {
    const c = script[i]!;
    if (c === '\n') {
      endCommand();
      line++;
      i++;
      for (const doc of pendingHeredocs) {
        // The body runs up to a line that is the delimiter alone.
        while (i < script.length) {
          const end = script.indexOf('\n', i);
          const bodyLine = script.slice(i, end < 0 ? script.length : end);
          i = end < 0 ? script.length : end + 1;
          line++;
          if ((doc.stripTabs ? bodyLine.replace(/^\t+/, '') : bodyLine) === doc.delimiter) break;
        }
      }
      pendingHeredocs = [];
      continue;
    }
    if (c === ' ' || c === '\t') {
      endWord();
      i++;
      continue;
    }
    if (c === '#' && word === undefined) {
      while (i < script.length && script[i] !== '\n') i++;
      continue;
    }
    if (c === '\\') {
      if (script[i + 1] === '\n') {
        line++;
        i += 2;
      } else {
        addToWord(script[i + 1] ?? '');
        i += 2;
      }
      continue;
    }
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      if (end < 0) throw new Error(`line ${line}: unterminated '`);
      const text = script.slice(i + 1, end);
      addToWord(text);
      line += text.split('\n').length - 1;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      const [open, openLine] = [i, line];
      let quoted = '';
      i++;
      while (i < script.length && script[i] !== '"') {
        const d = script[i]!;
        if (d === '\\' && i + 1 < script.length) {
          const next = script[i + 1]!;
          if (next === '\n') line++;
          else quoted += '$`"\\'.includes(next) ? next : `\\${next}`;
          i += 2;
        } else if (d === '$' && script[i + 1] === '(') {
          const end = substitution(i);
          quoted += script.slice(i, end);
          i = end;
        } else {
          if (d === '\n') line++;
          quoted += d;
          i++;
        }
      }
      if (i >= script.length) throw new Error(`line ${line}: unterminated "`);
      addToWord(quoted, open, openLine);
      i++;
      continue;
    }
    if (c === '$' && script[i + 1] === '(') {
      const end = substitution(i);
      addToWord(script.slice(i, end));
      i = end;
      continue;
    }
    const redirect = REDIRECTS.find((op) => script.startsWith(op, i));
    if (redirect) {
      // A file descriptor written right before the operator (2>, 1>&2) is part of it.
      if (word !== undefined && /^\d+$/.test(word) && script[i - 1] !== ' ') word = undefined;
      endWord();
      i += redirect.length;
      if (redirect === '<<' || redirect === '<<-') heredocNext = { stripTabs: redirect === '<<-' };
      else dropNextWord = true;
      continue;
    }
    const operator = OPERATORS.find((op) => script.startsWith(op, i));
    if (operator) {
      endCommand();
      i += operator.length;
      continue;
    }
    addToWord(c);
    i++;
  }
  endCommand();
  return commands;
}

/** Words that may lead a command without being it: keywords, wrappers and VAR=value assignments. */
const PREFIXES = new Set(['do', 'then', 'else', '!', 'time', 'exec', 'env', 'nohup', 'sudo']);

/** The arguments a command gives caas, or undefined when it does not run caas. */
export function caasArguments(words: readonly string[]): string[] | undefined {
  let k = 0;
  while (k < words.length && (PREFIXES.has(words[k]!) || /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[k]!))) k++;
  const rest = words.slice(k);
  if (rest[0] === 'caas') return rest.slice(1);
  if (rest[0] === 'npx' && rest[1] === 'caas') return rest.slice(2);
  if (rest[0] === 'node' && /(^|\/)bin\/caas\.js$/.test(rest[1] ?? '')) return rest.slice(2);
  if (rest[0] === 'npm' && rest[1] === 'run' && rest[2] === 'caas') return rest.slice(rest[3] === '--' ? 4 : 3);
  return undefined;
}

/** Every `caas …` command in the shell blocks of one Markdown file. */
export function docCommands(file: string, markdown: string): DocCommand[] {
  const found: DocCommand[] = [];
  for (const block of fencedBlocks(markdown)) {
    if (!SHELL_LANGS.has(block.lang)) continue;
    let commands: SimpleCommand[];
    try {
      commands = parseScript(scriptOf(block), block.line);
    } catch (error) {
      throw new Error(`${file}:${block.line}: the ${block.lang} block cannot be split into commands: ${(error as Error).message}`);
    }
    for (const command of commands) {
      const argv = caasArguments(command.words);
      if (argv) found.push({ file, line: command.line, text: command.text, argv });
    }
  }
  return found;
}
