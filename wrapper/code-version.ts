import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import type { CodeVersion } from '../models/identity.ts';

export class CodeVersionError extends Error {}

export interface CodeState {
  version: CodeVersion;
  /** Files under the analysis folder that differ from the commit (empty when clean). */
  dirtyFiles: string[];
  repoRoot: string;
}

/**
 * Reads the commit and remote of the git repository holding an analysis folder. Read-only:
 * GIT_OPTIONAL_LOCKS=0 stops `git status` from refreshing the index, so a dry run writes nothing.
 * With allowDirty, a sha256 of the uncommitted diff (tracked changes and untracked files) goes into
 * the version, so a dirty run never shares an identity with the clean commit.
 */
export async function readCodeVersion(dir: string, options: { allowDirty: boolean }): Promise<CodeState> {
  const git = simpleGit({ baseDir: dir }).env({ ...process.env, GIT_OPTIONAL_LOCKS: '0' });
  let repoRoot: string;
  try {
    repoRoot = (await git.revparse(['--show-toplevel'])).trim();
  } catch {
    throw new CodeVersionError(
      `${dir} is not inside a git repository, so its code version cannot be recorded. ` +
        'Run `git init && git add -A && git commit -m "analysis"` there (or put the analysis in a repository) and try again.',
    );
  }
  let commit: string;
  try {
    commit = (await git.revparse(['HEAD'])).trim();
  } catch {
    throw new CodeVersionError(
      `the repository at ${repoRoot} has no commit yet: commit the analysis code first (git add -A && git commit).`,
    );
  }
  const remotes = await git.getRemotes(true);
  const origin = remotes.find((r) => r.name === 'origin') ?? remotes[0];
  const url = origin?.refs.fetch || null;
  const relDir = path.relative(repoRoot, dir) || '.';
  const status = await git.status(['--porcelain', '--untracked-files=all', '--', relDir]);
  const dirtyFiles = status.files.map((f) => f.path).sort();
  const version: CodeVersion = { url, commit };
  if (dirtyFiles.length > 0 && options.allowDirty) {
    const hash = createHash('sha256');
    hash.update(await git.diff(['HEAD', '--', relDir]));
    for (const file of status.not_added.sort()) {
      hash.update(`\0untracked:${file}\0`);
      hash.update(await readFile(path.join(repoRoot, file)));
    }
    version.dirty = hash.digest('hex');
  }
  return { version, dirtyFiles, repoRoot };
}
