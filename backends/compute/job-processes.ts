import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** The variable that marks every process of one job; it survives setsid and double forks. */
export const JOB_TOKEN_VARIABLE = 'CAAS_JOB_TOKEN';

/**
 * Ends every process of a job when the agent dies, however it dies (SIGKILL included): it waits
 * for its stdin, which only the agent holds, to close. Written in bash, not Node, because it runs
 * once per job and must start in milliseconds. On a clean end the agent has already swept and says
 * so ("clean"); otherwise it kills the analysis' process group and every process whose environment
 * carries the job's token (read from /proc, builtins only: no fork per process), a few rounds in
 * case one forks while it is killed. Then it removes the job's temporary folder when asked.
 */
const WATCHDOG = `
token=$1 workdir=$2 remove=$3 pgid= clean=
while IFS= read -r line; do
  case $line in
    pgid\\ *) pgid=\${line#pgid } ;;
    forget) pgid= ;;
    clean) clean=1 ;;
  esac
done
if [ -z "$clean" ]; then
  [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null
  for round in 1 2 3 4 5; do
    found=
    for dir in /proc/[0-9]*; do
      while IFS= read -r -d '' entry; do
        if [ "$entry" = "${JOB_TOKEN_VARIABLE}=$token" ]; then kill -KILL "\${dir#/proc/}" 2>/dev/null && found=1; break; fi
      done < "$dir/environ" 2>/dev/null
    done
    [ -z "$found" ] && break
  done
fi
[ "$remove" = 1 ] && rm -rf -- "$workdir"
exit 0
`;

export interface JobProcessesOptions {
  /** The job's temporary folder. */
  workDir: string;
  /** Remove it if the agent dies (its launcher cannot: the runner may be dead too). */
  removeWorkDirOnDeath: boolean;
}

/**
 * The processes of one job. Every process the analysis starts carries the job's token in its
 * environment; `sweep` ends them all (the process group first, then whatever escaped it with
 * setsid or a double fork, found through /proc on Linux), and a watchdog does the same if the
 * agent itself is killed.
 */
export class JobProcesses {
  readonly token = randomBytes(16).toString('hex');
  private readonly watchdog: ChildProcess | undefined;
  private group: number | undefined;
  /** When the analysis started (clock ticks after boot): anything older cannot belong to the job. */
  private since = 0;

  constructor(options: JobProcessesOptions) {
    try {
      this.watchdog = spawn(
        'bash',
        ['-c', WATCHDOG, 'caas-watchdog', this.token, options.workDir, options.removeWorkDirOnDeath ? '1' : '0'],
        {
          stdio: ['pipe', 'ignore', 'ignore'],
          detached: true,
        },
      );
      this.watchdog.on('error', () => {});
      this.watchdog.stdin?.on('error', () => {});
      // The watchdog must neither keep the agent alive nor die with its process group.
      this.watchdog.unref();
      (this.watchdog.stdin as Socket | null)?.unref();
    } catch {
      this.watchdog = undefined;
    }
  }

  /** The analysis' main process leads its own process group. */
  started(pid: number | undefined): void {
    if (pid === undefined) return;
    this.group = pid;
    this.watchdog?.stdin?.write(`pgid ${pid}\n`);
    // Read now, while the process is certainly there (a zombie at worst: it is reaped only once this
    // returns to the event loop). Read later, a short analysis would be gone, the start unknown, and
    // every sweep would read the environment of every process on the machine.
    try {
      this.since = Number(statFields(readFileSync(`/proc/${pid}/stat`, 'latin1'))[19]) || 0;
    } catch {}
  }

  /**
   * The analysis is over and swept: its process group id may be reused by anyone from now on,
   * so neither this object nor the watchdog signals it again.
   */
  ended(): void {
    this.group = undefined;
    this.watchdog?.stdin?.write('forget\n');
  }

  /** Sends a signal to the analysis' process group (the polite first step of a cancel). */
  signalGroup(signal: NodeJS.Signals): void {
    if (this.group === undefined) return;
    try {
      process.kill(-this.group, signal);
    } catch {}
  }

  /**
   * Ends every process of the job: SIGTERM to all of them, up to `graceMs` to go, then SIGKILL,
   * until none is left. Returns how many there were.
   */
  async sweep(graceMs = 1000): Promise<number> {
    const first = await this.members();
    if (first.length === 0) return 0;
    for (const pid of first) kill(pid, 'SIGTERM');
    this.signalGroup('SIGTERM');
    for (const until = Date.now() + graceMs; Date.now() < until; ) {
      await sleep(50);
      if ((await this.members()).length === 0) return first.length;
    }
    for (let round = 0; round < 10; round++) {
      this.signalGroup('SIGKILL');
      const left = await this.members();
      if (left.length === 0) break;
      for (const pid of left) kill(pid, 'SIGKILL');
      await sleep(20);
    }
    return first.length;
  }

  /** The job is over and swept: the watchdog only removes what it was told to, and exits. */
  close(): void {
    this.watchdog?.stdin?.end('clean\n');
  }

  /**
   * Live processes of the job: its process group, and every process carrying the token. Read
   * synchronously: /proc files are generated in memory, and a few hundred tiny reads cost about a
   * millisecond this way against ten through the thread pool, on every job.
   */
  private async members(): Promise<number[]> {
    const found: number[] = [];
    const needle = Buffer.from(`\0${JOB_TOKEN_VARIABLE}=${this.token}\0`);
    let entries: string[];
    try {
      entries = readdirSync('/proc');
    } catch {
      // No /proc (not Linux): the process group is all that can be found.
      return this.group !== undefined && alive(-this.group) ? [this.group] : [];
    }
    for (const name of entries) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      if (pid === process.pid) continue;
      try {
        const fields = statFields(readFileSync(`/proc/${pid}/stat`, 'latin1'));
        // Zombies are gone already, only not reaped yet; anything older than the analysis is not of this job.
        if (fields[0] === 'Z' || Number(fields[19]) < this.since) continue;
        if (this.group !== undefined && Number(fields[2]) === this.group) {
          found.push(pid);
          continue;
        }
        const environ = readFileSync(`/proc/${pid}/environ`);
        if (Buffer.concat([Buffer.from([0]), environ]).includes(needle)) found.push(pid);
      } catch {}
    }
    return found;
  }
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces): [0] is the state. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {}
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
