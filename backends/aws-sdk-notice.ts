/**
 * The AWS SDK for JavaScript warns under Node < 22, once per process, with a 9-line
 * NodeVersionSupportWarning: its releases from 2027 on will need Node 22. caas supports Node
 * >= 20.19 until then (README, "Set up"), so the notice is worth one line per command, and nothing
 * from the agent processes a command starts (their runner has said it already). Every other
 * warning goes through untouched.
 */
export function condenseAwsSdkNodeNotice(say?: (line: string) => void): void {
  const emitWarning = process.emitWarning;
  let said = false;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const text = typeof warning === 'string' ? warning : warning?.message;
    if (typeof text !== 'string' || !text.startsWith('NodeVersionSupportWarning')) {
      return (emitWarning as (...args: unknown[]) => void).call(this, warning, ...rest);
    }
    if (!said && say && !warningsSilenced()) {
      const needed = /require node (>=\s*\d+)/i.exec(text)?.[1] ?? 'a newer Node';
      say(`caas: note: AWS SDK releases from 2027 on need Node ${needed}; this is Node ${process.version} (caas supports >=20.19)`);
    }
    said = true;
  } as typeof process.emitWarning;
}

/** Node's own switch for process warnings (NODE_NO_WARNINGS=1, --no-warnings) silences this one too. */
function warningsSilenced(): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return process.env.NODE_NO_WARNINGS === '1' || flags.includes('--no-warnings');
}
