import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import { CaasError } from '../models/caas-error.ts';
import type { CodeVersion } from '../models/identity.ts';

export class CodeVersionError extends CaasError {}

export interface CodeState {
  version: CodeVersion;
  /** Files under the analysis folder that differ from the commit (empty when clean). */
  dirtyFiles: string[];
  repoRoot: string;
}

/**
 * Reads the commit and remote of the git repository holding an analysis folder, read-only.
 * With allowDirty, a sha256 of the uncommitted diff (tracked changes and untracked files) goes into
 * the version, so a dirty run never shares an identity with the clean commit.
 */
export async function readCodeVersion(dir: string, options: { allowDirty: boolean }): Promise<CodeState> {
  const git = simpleGit({ baseDir: dir });
  let repoRoot: string;
  try {
    repoRoot = (await git.revparse(['--show-toplevel'])).trim();
  } catch (error) {
    if (!/not a git repository/i.test(String(error))) throw new CodeVersionError(`cannot read the git version of ${dir}: ${String(error)}`);
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
  // git runs in the analysis folder, so "." is the folder; porcelain paths come back repo-relative.
  if ((await git.raw(['ls-files', '--', '.'])).trim() === '') {
    throw new CodeVersionError(
      `${dir} is not tracked by the git repository at ${repoRoot} (new, or ignored), so no commit describes its code. ` +
        'Add and commit the analysis folder (git add <folder> && git commit), or move it into its own repository.',
    );
  }
  // --no-optional-locks: `git status` must not refresh the index, so a dry run writes nothing.
  const porcelain = await git.raw(['--no-optional-locks', 'status', '--porcelain=v1', '-z', '--untracked-files=all', '--', '.']);
  const entries = porcelain.split('\0').filter(Boolean);
  const dirtyFiles = entries.map((e) => e.slice(3)).sort();
  const untracked = entries.filter((e) => e.startsWith('??')).map((e) => e.slice(3));
  const version: CodeVersion = { url, commit };
  if (dirtyFiles.length > 0 && options.allowDirty) {
    const hash = createHash('sha256');
    hash.update(await git.raw(['--no-optional-locks', 'diff', 'HEAD', '--', '.']));
    for (const file of untracked.sort()) {
      hash.update(`\0untracked:${file}\0`);
      hash.update(await readFile(path.join(repoRoot, file)));
    }
    version.dirty = hash.digest('hex');
  }
  return { version, dirtyFiles, repoRoot };
}
