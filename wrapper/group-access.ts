import type { Analysis } from '../models/analysis.ts';
import type { Blueprint } from '../models/blueprint.ts';
import type { Submitter } from '../models/record.ts';
import type { Prepared } from './prepare.ts';

type Described = Pick<Analysis, 'name' | 'blueprint'>;

/** Why a group may not use an analysis: its blueprint does not list it. */
export function groupsRefusal(analysis: Described, group: string): string | undefined {
  const groups = analysis.blueprint.groups.map((g) => g.name);
  if (groups.includes(group)) return undefined;
  return `group "${group}" may not use ${analysis.name}: the blueprint lists ${groups.join(', ')}`;
}

/** An assumed role's session as S3 reports it: "AWS:" (optional here), the role's unique id, ":", the session name. */
const ROLE_SESSION = /^(?:AWS:)?(AROA[A-Z0-9]+):(.+)$/;

/**
 * Whether a user is one of a group's `users`. An IAM principal as S3 reports it ("AWS:AIDA...")
 * matches the entry with or without its "AWS:" prefix. A role's session ("AWS:AROA...:name") also
 * matches the role's id alone: the session name is chosen by whoever assumes the role, so the role
 * is what can be trusted, and listing it admits every session of it.
 */
export function listedUser(users: readonly string[], user: string): boolean {
  const bare = user.startsWith('AWS:') ? user.slice(4) : user;
  if (users.includes(user) || users.includes(bare)) return true;
  const role = ROLE_SESSION.exec(user)?.[1];
  return role !== undefined && (users.includes(role) || users.includes(`AWS:${role}`));
}

/**
 * The `users` entries that name a role's session ("AROA...:alice"): whoever may assume the role
 * chooses the session name, so such an entry admits anyone who can assume the role and calls their
 * session "alice", unless the role's trust policy pins session names (sts:RoleSessionName, or IAM
 * Identity Center, which names sessions after its users). Said by `caas blueprint validate`.
 */
export function sessionNamedUsers(blueprint: Pick<Blueprint, 'groups'>): string[] {
  const warnings: string[] = [];
  blueprint.groups.forEach((group, g) => {
    (group.users ?? []).forEach((user, u) => {
      const role = ROLE_SESSION.exec(user)?.[1];
      if (!role) return;
      warnings.push(
        `groups.${g}.users.${u}: "${user}" names a session of role ${role}; its session name is chosen by whoever assumes the role, so this admits anyone who may assume ${role}, unless its trust policy pins session names (sts:RoleSessionName, or IAM Identity Center). List "${role}" to admit the role's sessions openly`,
      );
    });
  });
  return warnings;
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
