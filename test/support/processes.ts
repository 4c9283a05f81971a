import { readdirSync, readFileSync } from 'node:fs';

/**
 * Live processes (zombies excluded) whose environment holds `name=value`, from /proc: how a test
 * finds every process of one job, including any that escaped its process group.
 */
export function processesWithEnv(name: string, value: string): number[] {
  const needle = Buffer.from(`\0${name}=${value}\0`);
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const environ = readFileSync(`/proc/${entry}/environ`);
      if (Buffer.concat([Buffer.from([0]), environ]).includes(needle)) found.push(Number(entry));
    } catch {}
  }
  return found;
}

/** The parent of a process (0 when it is gone). */
export function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/**
 * The agent running a job, found from the job's processes (those with `name=value` in their
 * environment): the parent of the one member whose parent is not a member, the analysis' main process.
 */
export function agentOf(name: string, value: string): number | undefined {
  const members = processesWithEnv(name, value);
  return members.map(parentOf).find((parent) => parent > 0 && !members.includes(parent));
}
