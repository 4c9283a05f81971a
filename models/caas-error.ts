/**
 * An error caas explains to its user in one line. Every error class of caas extends it, so the CLI
 * (and a library caller) translates them in one place: `exitCode` says what kind it is, 2 when the
 * user's input is at fault (the default), and `name` is the class's own name, for logs and `catch`
 * blocks that cannot use `instanceof` (an error that crossed a module copy or a process).
 */
export class CaasError extends Error {
  readonly exitCode: number;

  constructor(message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options?.exitCode ?? 2;
  }
}

/** The exit code an error thrown out of a command means: a CaasError's own, 1 for anything else (a fault). */
export function exitCodeOf(error: unknown): number {
  return error instanceof CaasError ? error.exitCode : 1;
}
