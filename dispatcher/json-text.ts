import { DispatchError } from './dispatch-error.ts';

/**
 * JSON.parse, with an error that says where: `name:line:column: message`. V8 leaves the position
 * out of several of its messages, so on failure a small scanner finds the offending offset itself.
 */
export function parseJsonText(text: string, name: string, firstLine = 1): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const offset = firstErrorOffset(text);
    const before = text.slice(0, offset).split('\n');
    const line = firstLine + before.length - 1;
    const column = (before.at(-1)?.length ?? 0) + 1;
    const reason = (error as Error).message.replace(/,? ?".*" is not valid JSON$/s, '').replace(/ (in JSON )?at position \d+.*$/s, '');
    throw new DispatchError(`${name}:${line}:${column}: invalid JSON: ${reason}`);
  }
}

/** Offset of the first character that stops `text` from being one JSON value (text.length at an early end). */
function firstErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const literal = (word: string) => {
    for (const char of word) {
      if (text[i] !== char) fail();
      i++;
    }
  };
  const string = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      const code = text.charCodeAt(i);
      if (code < 0x20) fail();
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          const hex = /^[0-9a-fA-F]{0,4}/.exec(text.slice(i + 1, i + 5))?.[0] ?? '';
          i += hex.length;
          if (hex.length < 4) {
            i++;
            fail();
          }
        } else if (!'"\\/bfnrt'.includes(text[i] ?? '\0')) fail();
      }
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const number = () => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!match) fail();
    i += match![0].length;
  };
  /** The members of an object or the elements of an array, up to and including the closing bracket. */
  const members = (close: '}' | ']') => {
    i++;
    space();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      if (close === '}') {
        space();
        if (text[i] !== '"') fail();
        string();
        space();
        if (text[i] !== ':') fail();
        i++;
      }
      value();
      space();
      if (text[i] === close) {
        i++;
        return;
      }
      if (text[i] !== ',') fail();
      i++;
    }
  };
  const value = () => {
    space();
    const char = text[i];
    if (char === '{') members('}');
    else if (char === '[') members(']');
    else if (char === '"') string();
    else if (char === 't') literal('true');
    else if (char === 'f') literal('false');
    else if (char === 'n') literal('null');
    else number();
  };
  try {
    value();
    space();
    return Math.min(i, text.length);
  } catch (offset) {
    if (typeof offset === 'number') return Math.min(offset, text.length);
    throw offset;
  }
}
