import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { simpleGit } from 'simple-git';
import { chooseDevInstance, DevRefused, type DevTarget, durationText } from './dev-instances.ts';

/** Image states from which it never becomes available. */
const IMAGE_FAILED = new Set(['failed', 'invalid', 'error', 'deregistered', 'disabled']);
/** Progress lines while waiting repeat at most this often when nothing changes. */
const PROGRESS_EVERY_MS = 30_000;

export interface DevSaveOptions {
  /** Default: the one development instance of the analysis and owner. */
  instanceId?: string;
  /** Use this image (one saved before, whose wait timed out) instead of making one. */
  image?: string;
  /** The image's name; default caas-{analysis}-{UTC time}. */
  name?: string;
  /** A line added to the commit message. */
  message?: string;
  timeoutMs: number;
  intervalMs: number;
  out: (line: string) => void;
}

export interface DevSaved {
  image: string;
  /** The commit that put it into the blueprint; undefined when the blueprint already named it. */
  commit?: string;
  file: string;
}

/**
 * NeuroCAAS's create_devami + update_blueprint: an image of the development instance, waited for
 * until it is available (bounded, with progress), then written into the analysis' blueprint.json
 * as its `ami` and committed, that file alone, in the analysis' repository. The blueprint is part
 * of the analysis' code, so the identity of every later job covers the image through that commit.
 * A blueprint with changes of its own is refused before the image is made; on any failure after it
 * the blueprint is as it was.
 */
/**
 * The file the analysis reads its blueprint from: the one its analysis.json names, else the
 * blueprint.json an index.ts imports (as the shipped analyses do). A blueprint written inside
 * analysis.json is refused: the image goes into a file of its own, committed alone.
 */
export async function blueprintFileOf(dir: string): Promise<string> {
  const declaration = path.join(dir, 'analysis.json');
  if (existsSync(path.join(dir, 'index.ts')) || !existsSync(declaration)) return path.join(dir, 'blueprint.json');
  const named = (JSON.parse(await readFile(declaration, 'utf8')) as { blueprint?: unknown }).blueprint ?? 'blueprint.json';
  if (typeof named !== 'string') {
    throw new DevRefused(
      `${declaration} holds its blueprint inline: caas dev save writes the image into a blueprint file, committed alone; move it to blueprint.json and name that file ("blueprint": "blueprint.json")`,
    );
  }
  return path.join(dir, named);
}

export async function saveDevInstance(target: DevTarget, options: DevSaveOptions): Promise<DevSaved> {
  const { analysis, api } = target;
  const { out } = options;
  const file = await blueprintFileOf(analysis.dir);
  await checkBlueprintCommitted(file);
  let image = options.image;
  let source: string | undefined;
  if (image === undefined) {
    const instance = await chooseDevInstance(target, options.instanceId);
    const name =
      options.name ??
      `caas-${analysis.name}-${new Date()
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z')}`;
    image = await api.createImage(instance.id, {
      name,
      description: `caas dev save of ${analysis.name} from ${instance.id}`,
      analysis: analysis.name,
    });
    source = instance.id;
    out(`creating image ${image} (${name}) of ${instance.id}`);
  } else if (!/^ami-[0-9a-f]+$/.test(image)) {
    throw new DevRefused(`--image "${image}" is not an image id like ami-0123456789abcdef0`);
  }
  await waitForImage(target, image, options);
  // Only an image that is there counts as saved, for the note `caas dev terminate` prints.
  if (source) await api.markSaved(source, image);
  const commit = await commitAmi(file, image, {
    message:
      `${analysis.name}: image ${image}${source ? ` from development instance ${source}` : ''}` +
      `${options.message ? `\n\n${options.message}` : ''}\n\nWritten by caas dev save.`,
    image,
  });
  out(commit ? `${file} now names ${image}: committed ${commit.slice(0, 12)}` : `${file} already named ${image}: nothing to commit`);
  return { image, commit, file };
}

/** Polls the image until it is available; failed, or still pending at the timeout, is refused with what to do. */
async function waitForImage(target: DevTarget, image: string, options: DevSaveOptions): Promise<void> {
  const started = Date.now();
  let said = '';
  let saidAt = 0;
  for (;;) {
    const described = await target.api.image(image);
    // A fresh image may not be listed yet.
    const state = described?.state ?? 'pending';
    if (state === 'available') {
      options.out(`image ${image}: available after ${durationText(Date.now() - started)}`);
      return;
    }
    if (IMAGE_FAILED.has(state)) {
      throw new DevRefused(
        `image ${image} is ${state}${described?.reason ? ` (${described.reason})` : ''}: the blueprint is unchanged; save again (caas dev save ${target.analysis.name})`,
      );
    }
    if (Date.now() - started >= options.timeoutMs) {
      throw new DevRefused(
        `image ${image} is still ${state} after ${durationText(Date.now() - started)}: the blueprint is unchanged; ` +
          `once it is available, caas dev save ${target.analysis.name} --image ${image} writes it there`,
      );
    }
    if (state !== said || Date.now() - saidAt >= PROGRESS_EVERY_MS) {
      options.out(`image ${image}: ${state} (${durationText(Date.now() - started)})`);
      said = state;
      saidAt = Date.now();
    }
    await sleep(Math.min(options.intervalMs, Math.max(0, options.timeoutMs - (Date.now() - started))));
  }
}

/** Refuses a blueprint caas dev save could not commit alone: missing, outside git, untracked or changed. */
async function checkBlueprintCommitted(file: string): Promise<void> {
  if (!existsSync(file)) {
    throw new DevRefused(
      `${file} does not exist: caas dev save writes the image into the analysis' blueprint.json (its index.ts imports it, as the shipped analyses do)`,
    );
  }
  const status = await blueprintStatus(file);
  if (status === '') return;
  if (status.startsWith('??')) throw new DevRefused(`${file} is not committed yet: commit it first (git add, git commit)`);
  throw new DevRefused(
    `${file} has uncommitted changes: commit or undo them first; caas dev save commits that file alone, with the new image in it`,
  );
}

/** `git status --porcelain` of the blueprint file alone; refused when the folder is not in a git repository. */
async function blueprintStatus(file: string): Promise<string> {
  const git = simpleGit({ baseDir: path.dirname(file) });
  try {
    return (await git.raw(['--no-optional-locks', 'status', '--porcelain=v1', '--', path.basename(file)])).trim();
  } catch (error) {
    throw new DevRefused(
      `${path.dirname(file)} is not in a git repository (${String(error).trim()}): caas dev save commits the blueprint there`,
    );
  }
}

/** Writes the image into the blueprint and commits that file alone; puts the file back if the commit fails. */
async function commitAmi(file: string, image: string, commit: { message: string; image: string }): Promise<string | undefined> {
  // Checked again: it may have changed while the image was being made.
  await checkBlueprintCommitted(file).catch((error: Error) => {
    throw new DevRefused(`${error.message}; then caas dev save --image ${image} writes the image made meanwhile`);
  });
  const before = await readFile(file, 'utf8');
  const after = blueprintWithAmi(before, image, file);
  if (after === before) return undefined;
  await writeFile(file, after);
  const git = simpleGit({ baseDir: path.dirname(file) });
  try {
    await git.raw(['commit', '--only', '-m', commit.message, '--', path.basename(file)]);
    return (await git.revparse(['HEAD'])).trim();
  } catch (error) {
    await writeFile(file, before);
    throw new DevRefused(
      `git commit of ${file} failed (${String(error).trim()}): the blueprint is unchanged; image ${image} exists: ` +
        `caas dev save --image ${image} tries again`,
    );
  }
}

/**
 * The blueprint's text with `ami` set, every other byte as it was when that can be done (the
 * value replaced in place, or one line added after "bucket"), else the JSON rewritten with two
 * spaces. Either way the result parses to the blueprint with only `ami` changed.
 */
export function blueprintWithAmi(text: string, ami: string, file = 'blueprint.json'): string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new DevRefused(`${file} is not JSON (${(error as Error).message}): fix it first`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new DevRefused(`${file} is not a JSON object`);
  const wanted = { ...(data as Record<string, unknown>), ami };
  const edited =
    'ami' in data
      ? text.replace(/("ami"\s*:\s*)"(?:[^"\\]|\\.)*"/, `$1${JSON.stringify(ami)}`)
      : text.replace(/^(\s*\{\s*\n)([ \t]*)("bucket"\s*:\s*"(?:[^"\\]|\\.)*",[ \t]*\n)/, `$1$2$3$2"ami": ${JSON.stringify(ami)},\n`);
  if (parsesTo(edited, wanted)) return edited;
  return `${JSON.stringify(wanted, null, 2)}\n`;
}

function parsesTo(text: string, wanted: unknown): boolean {
  try {
    return isDeepStrictEqual(JSON.parse(text), wanted);
  } catch {
    return false;
  }
}
