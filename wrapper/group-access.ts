import type { Analysis } from '../models/analysis.ts';
import type { Submitter } from '../models/record.ts';
import type { Prepared } from './prepare.ts';

type Described = Pick<Analysis, 'name' | 'blueprint'>;

/** Why a group may not use an analysis: its blueprint does not list it. */
export function groupsRefusal(analysis: Described, group: string): string | undefined {
  const groups = analysis.blueprint.groups.map((g) => g.name);
  if (groups.includes(group)) return undefined;
  return `group "${group}" may not use ${analysis.name}: the blueprint lists ${groups.join(', ')}`;
}

/**
 * Whether a user is one of a group's `users`. An IAM principal as S3 reports it ("AWS:AIDA...")
 * matches the entry with or without its "AWS:" prefix.
 */
export function listedUser(users: readonly string[], user: string): boolean {
  return users.includes(user) || (user.startsWith('AWS:') && users.includes(user.slice(4)));
}

/**
 * Why the submitter may not run jobs in a group that lists its `users`. Where the submitter cannot
 * be known (a submit file found by polling) the list is not applied; where it must be said
 * (`caas run`, `mustBeNamed`), a run that names nobody is refused too.
 */
export function userRefusal(
  analysis: Described,
  group: string,
  submitter: Submitter | undefined,
  mustBeNamed: boolean,
): string | undefined {
  const users = analysis.blueprint.groups.find((g) => g.name === group)?.users;
  if (!users) return undefined;
  if (!submitter) {
    return mustBeNamed
      ? `group "${group}" of ${analysis.name} admits only its listed users: say who you run for with --user (or CAAS_USER)`
      : undefined;
  }
  if (listedUser(users, submitter.user)) return undefined;
  return `user "${submitter.user}" is not one of the users of group "${group}" of ${analysis.name}`;
}

/** A prepared job of `caas run` whose group or user the blueprint refuses becomes invalid, with why. */
export function admitToGroup(prepared: Prepared, submitter: Submitter | undefined): Prepared {
  if (!prepared.ok) return prepared;
  const { job } = prepared;
  const refusal = groupsRefusal(job.analysis, job.group) ?? userRefusal(job.analysis, job.group, submitter, true);
  return refusal ? { ok: false, where: job.where, reason: `group: ${refusal}`, analysis: job.analysis.name } : prepared;
}
