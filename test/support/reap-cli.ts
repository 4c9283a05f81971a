import { Command } from 'commander';
import { vi } from 'vitest';
import { registerReap } from '../../cli/commands/reap.ts';
import { addGlobalOptions } from '../../cli/settings.ts';

/**
 * What `caas reap` prints, run in this process so the test's mocked cloud APIs answer it; with
 * `now`, at that clock (only Date is faked: the SDK's timers still run).
 */
export async function reapOutput(args: readonly string[], now?: number | Date): Promise<string> {
  const program = addGlobalOptions(new Command('caas')).exitOverride();
  registerReap(program);
  let output = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    output += String(chunk);
    return true;
  });
  if (now !== undefined) vi.useFakeTimers({ now, toFake: ['Date'] });
  try {
    await program.parseAsync(['node', 'caas', 'reap', ...args]);
  } finally {
    if (now !== undefined) vi.useRealTimers();
    write.mockRestore();
  }
  return output;
}
