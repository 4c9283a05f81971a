import { CaasError } from '../models/caas-error.ts';

/**
 * A problem with what the user asked dispatch to do (a flag, a query, a CSV, a parameter file, a
 * prefix): the message names the input and, where it can, the line or field. The CLI exits 2.
 */
export class DispatchError extends CaasError {}
