import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CommanderError } from 'commander';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { S3Store } from '../backends/storage/s3.ts';
import { buildProgram } from '../cli/program.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { submitKey } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import { folderKeys, readSubmit } from '../wrapper/submission.ts';
import { settledAnswer } from '../wrapper/submission-claim.ts';
import { alive, type BootedMachine, bootUserData, DevCloud, powerDown, rebootMachine, waitFor } from './support/dev-cloud.ts';
import { AnalysisRepo, git, ROOT, removeDir, scratchDir } from './support/workspace.ts';

/**
 * A NeuroCAAS developer's cycle with `caas dev`, against a fake EC2 account (the mocked SDK) whose
 * instances are booted here: their UserData runs with bash, the self-stop reads the instance's
 * tags from a fake metadata service, and test jobs run through caas's real agent against a real S3
 * server (s3rver). `save` commits into a real git repository holding the analysis.
 */
const BUCKET = 'mock-wait';
const GROUP = 'caas';
const OWNER = 'alice';

let s3: S3rverHandle;
let store: S3Store;
let storeUrl: string;
let base: string;
let repo: AnalysisRepo;
const cloud = new DevCloud();
const machines: BootedMachine[] = [];

beforeAll(async () => {
  s3 = await startS3rver();
  storeUrl = `s3://?endpoint=${s3.endpoint}`;
  store = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
  await store.createBucket(BUCKET);
  await store.put(BUCKET, `${GROUP}/inputs/session-1.txt`, 'spikes\n');
  await store.put(BUCKET, `${GROUP}/configs/quick.json`, '{"wait": 0}\n');
  await store.put(BUCKET, `${GROUP}/configs/broken.json`, '{"wait": "soon"}\n');
  base = scratchDir('dev-instance');
  repo = new AnalysisRepo(base);
  git(repo.dir, 'config', 'user.name', 'dev');
  git(repo.dir, 'config', 'user.email', 'dev@example.org');
  repo.addScriptAnalysis('no-image', 'echo hi\n');
  process.env.CAAS_ANALYSES = repo.dir;
  await cloud.start();
});
afterAll(async () => {
  delete process.env.CAAS_ANALYSES;
  await cloud.stop();
  await store?.close();
  await s3?.stop();
  removeDir(base);
});
beforeEach(() => cloud.reset());
afterEach(async () => {
  await Promise.all(machines.splice(0).map(powerDown));
});

/** `caas …` as a user types it, run in this process so the mocked EC2 API answers it; exit code as cli/main.ts sets it. */
async function caas(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const outSpy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const errSpy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  const before = process.exitCode;
  process.exitCode = undefined;
  let code: number;
  try {
    await buildProgram().parseAsync(['node', 'caas', '--home', path.join(base, 'home'), ...args]);
    code = Number(process.exitCode ?? 0);
  } catch (error) {
    if (error instanceof CommanderError) code = error.exitCode === 0 ? 0 : 2;
    else if (error instanceof CaasError) {
      stderr += `caas: ${error.message}\n`;
      code = error.exitCode;
    } else throw error;
  } finally {
    outSpy.mockRestore();
    errSpy.mockRestore();
    process.exitCode = before;
  }
  return { code, stdout, stderr };
}

/** Boots a launched instance as EC2 would, with this checkout as the caas on its image unless `env` says otherwise. */
async function boot(id: string, env: Record<string, string> = {}): Promise<BootedMachine> {
  cloud.machine = id;
  const dir = path.join(base, `machine-${id}-${machines.length}-${Date.now()}`);
  mkdirSync(dir);
  const machine = await bootUserData(cloud, cloud.userData(id), dir, machineEnv(env));
  machines.push(machine);
  return machine;
}

function machineEnv(env: Record<string, string> = {}): Record<string, string> {
  return { ...s3Env(s3.endpoint), CAAS_ROOT: ROOT, CAAS_DEV_CHECK_S: '0.2', CAAS_DEV_POLL_MS: '200', ...env };
}

function blueprintFile(): string {
  return path.join(repo.dir, 'mock-wait', 'blueprint.json');
}

function submitFile(name: string, submit: Record<string, unknown>): string {
  const file = path.join(base, name);
  writeFileSync(file, `${JSON.stringify(submit, null, 2)}\n`);
  return file;
}

describe('caas dev: the development cycle', () => {
  it('launches an instance from the blueprint, runs a submit file on it, saves it into the blueprint with a commit, terminates it', async () => {
    // 1. Launch: from the blueprint's image, stopping (not terminating) itself, its expiry in a tag it can read.
    const launched = await caas('dev', 'launch', 'mock-wait', '--store', storeUrl, '--owner', OWNER, '--key-name', 'lab-key');
    expect(launched.code, launched.stderr).toBe(0);
    const [run] = cloud.calls('RunInstances');
    expect(run).toMatchObject({
      ImageId: 'ami-0123456789abcdef0',
      InstanceType: 't3.micro',
      KeyName: 'lab-key',
      InstanceInitiatedShutdownBehavior: 'stop',
      MetadataOptions: { HttpTokens: 'required', InstanceMetadataTags: 'enabled' },
    });
    expect(String(run!.ClientToken)).toMatch(/^caas-dev-/);
    const [instance] = [...cloud.instances.values()];
    expect(instance!.tags).toMatchObject({ 'caas:dev': 'mock-wait', 'caas:owner': OWNER });
    const expiry = Date.parse(instance!.tags['caas:expiry']!);
    expect(expiry - Date.now()).toBeGreaterThan(58 * 60_000);
    expect(expiry - Date.now()).toBeLessThanOrEqual(61 * 60_000);
    expect(launched.stdout).toContain(`launched ${instance!.id} (pending, t3.micro, stops in 60 min`);

    // Launching again gives the same instance: one per analysis and owner.
    const again = await caas('dev', 'launch', 'mock-wait', '--store', storeUrl, '--owner', OWNER);
    expect(again.stdout).toContain(`mock-wait already has a development instance for ${OWNER}: ${instance!.id}`);
    expect(cloud.calls('RunInstances')).toHaveLength(1);

    // 2. The instance boots; a submit file naming data and a config in the bucket runs on it.
    const machine = await boot(instance!.id);
    const submit = submitFile('submit.json', {
      dataname: `${GROUP}/inputs/session-1.txt`,
      configname: `${GROUP}/configs/quick.json`,
      timestamp: 'devtest1',
    });
    const tested = await caas('dev', 'test', 'mock-wait', submit, '--store', storeUrl, '--owner', OWNER, '--interval', '0.2');
    expect(tested.code, `${tested.stdout}\n${tested.stderr}\n${machine.log()}`).toBe(0);
    expect(tested.stdout).toContain(`${instance!.id} took the job`);
    expect(tested.stdout).toContain(`succeeded: results at s3://${BUCKET}/${GROUP}/results/job__${BUCKET}_devtest1/process_results/`);

    // Under the bucket contract: the submit file, the job folder's logs, process_results, end.txt last.
    const folder = folderKeys(BUCKET, GROUP, 'devtest1');
    expect((await store.get(BUCKET, folder.end)).toString()).toMatch(/^SUCCESS\n/);
    expect(JSON.parse((await store.get(BUCKET, `${folder.process}waited.json`)).toString())).toMatchObject({
      waited_s: 0,
      input: 'session-1.txt',
    });
    expect(JSON.parse((await store.get(BUCKET, `${folder.process}quick.json`)).toString())).toEqual({ wait: 0, fail: false });
    expect(JSON.parse((await store.get(BUCKET, `${folder.logs}DATASET_NAME-session-1.txt_STATUS.json`)).toString())).toMatchObject({
      status: 'SUCCESS',
      instance: instance!.id,
    });
    const certificate = (await store.get(BUCKET, folder.certificate)).toString();
    expect(certificate).toContain(`job results/job__${BUCKET}_devtest1 on ${instance!.id}`);
    expect(certificate).toContain('code version not checked: the job names none (a test job of caas dev');
    expect(certificate).toContain('job succeeded');
    const submitBytes = await store.get(BUCKET, submitKey(GROUP, 'devtest1'));
    expect(submitBytes.equals(readFileSync(submit))).toBe(true);
    // Not a submission a watcher answers, and not recorded: no metadata DB was even opened.
    const read = readSubmit(submitKey(GROUP, 'devtest1'), GROUP, submitBytes);
    await expect(settledAnswer(store, BUCKET, folder, read)).resolves.toBe('a job of caas dev test, not a submission');
    expect(existsSync(path.join(base, 'home', 'metadata.sqlite'))).toBe(false);

    // 3. Save: an image of the instance, its id written into blueprint.json and committed, that file alone.
    const before = readFileSync(blueprintFile(), 'utf8');
    const head = repo.head();
    writeFileSync(path.join(repo.dir, 'mock-wait', 'notes.txt'), 'work in progress\n');
    writeFileSync(
      path.join(repo.dir, 'mock-wait', 'run.sh'),
      `${readFileSync(path.join(repo.dir, 'mock-wait', 'run.sh'), 'utf8')}# staged, not saved\n`,
    );
    git(repo.dir, 'add', 'mock-wait/run.sh');
    const saved = await caas('dev', 'save', 'mock-wait', '--owner', OWNER, '--interval', '0.05');
    expect(saved.code, saved.stderr).toBe(0);
    const [image] = [...cloud.images.values()];
    expect(image).toMatchObject({ instance: instance!.id, state: 'available' });
    expect(saved.stdout).toContain(`creating image ${image!.id}`);
    expect(saved.stdout).toMatch(new RegExp(`image ${image!.id}: pending`));
    expect(saved.stdout).toContain(`image ${image!.id}: available`);
    const after = readFileSync(blueprintFile(), 'utf8');
    expect(after).toBe(before.replace('"ami": "ami-0123456789abcdef0"', `"ami": "${image!.id}"`));
    expect(git(repo.dir, 'rev-parse', 'HEAD^')).toBe(head);
    expect(git(repo.dir, 'log', '-1', '--format=%s')).toBe(`mock-wait: image ${image!.id} from development instance ${instance!.id}`);
    expect(git(repo.dir, 'show', '--name-only', '--format=', 'HEAD')).toBe('mock-wait/blueprint.json');
    expect(git(repo.dir, 'status', '--porcelain')).toBe('M  mock-wait/run.sh\n?? mock-wait/notes.txt');
    expect(instance!.tags['caas:saved-image']).toBe(image!.id);

    // 4. Terminate.
    const terminated = await caas('dev', 'terminate', 'mock-wait', '--owner', OWNER);
    expect(terminated.code, terminated.stderr).toBe(0);
    expect(cloud.calls('TerminateInstances')).toEqual([{ InstanceIds: [instance!.id] }]);
    expect(terminated.stdout).not.toContain('no image was saved');
    const none = await caas('dev', 'status', 'mock-wait', '--owner', OWNER);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(`no development instance of mock-wait for ${OWNER}`);
  });

  it('stops itself when its lifetime is over, at the expiry `extend` moved, even with no caas on the image; status, start and stop', async () => {
    const launched = await caas('dev', 'launch', 'mock-wait', '--store', storeUrl, '--owner', OWNER, '--lifetime', '6s');
    expect(launched.code, launched.stderr).toBe(0);
    const [instance] = [...cloud.instances.values()];
    const launchExpiry = Date.parse(instance!.tags['caas:expiry']!);
    // The self-stop needs only bash, curl and date: a base image without caas stops all the same.
    const machine = await boot(instance!.id, { CAAS_ROOT: path.join(base, 'no-caas-here') });
    await waitFor(() => machine.log().includes('stops at its caas:expiry tag'), 10_000, machine.log());
    expect(Date.now(), 'the machine booted too slowly for this test').toBeLessThan(launchExpiry);

    const extended = await caas('dev', 'extend', 'mock-wait', '--owner', OWNER, '--by', '4s');
    expect(extended.code, extended.stderr).toBe(0);
    const newExpiry = Date.parse(instance!.tags['caas:expiry']!);
    expect(newExpiry).toBe(launchExpiry + 4000);

    // Past the launch's expiry, the instance goes on: it read the moved tag.
    await waitFor(() => Date.now() > launchExpiry + 1500, 10_000, 'clock');
    expect(machine.poweredOff()).toEqual([]);
    await waitFor(() => machine.poweredOff().length > 0, 10_000, `no self-stop; log:\n${machine.log()}`);
    expect(Date.now()).toBeGreaterThanOrEqual(newExpiry);
    expect(machine.poweredOff()).toEqual(['lifetime']);
    expect(machine.log()).toContain('lifetime over');
    expect(machine.log()).toContain('no caas at');
    // InstanceInitiatedShutdownBehavior stop: powered off, the instance is stopped, its disk kept.
    expect(instance!.state).toBe('stopped');
    await powerDown(machine);

    const status = await caas('dev', 'status', 'mock-wait', '--owner', OWNER);
    expect(status.stdout).toMatch(new RegExp(`${instance!.id}\\s+stopped\\s+t3\\.micro\\s+${OWNER}\\s+lifetime over since`));

    // Started again with a fresh lifetime: the boot script cloud-init runs at every boot arms the self-stop again.
    const started = await caas('dev', 'start', 'mock-wait', '--owner', OWNER, '--lifetime', '60m');
    expect(started.code, started.stderr).toBe(0);
    expect(cloud.calls('StartInstances')).toEqual([{ InstanceIds: [instance!.id] }]);
    expect(Date.parse(instance!.tags['caas:expiry']!) - Date.now()).toBeGreaterThan(59 * 60_000);
    await rebootMachine(cloud, machine, machineEnv({ CAAS_ROOT: path.join(base, 'no-caas-here') }));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(machine.poweredOff()).toEqual(['lifetime']);
    const json = await caas('dev', 'status', 'mock-wait', '--owner', OWNER, '--json');
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({
        id: instance!.id,
        state: 'running',
        owner: OWNER,
        analysis: 'mock-wait',
        address: expect.stringContaining('compute'),
      }),
    ]);

    const stopped = await caas('dev', 'stop', 'mock-wait', '--owner', OWNER);
    expect(stopped.stdout).toContain(`stopping ${instance!.id}`);
    expect(instance!.state).toBe('stopped');
    const terminated = await caas('dev', 'terminate', 'mock-wait', instance!.id, '--owner', OWNER);
    expect(terminated.stdout).toContain(`note: no image was saved of ${instance!.id}`);
  });

  it('does nothing at boot on an instance launched from a saved image (no caas:dev tag)', async () => {
    await caas('dev', 'launch', 'mock-wait', '--store', storeUrl, '--owner', OWNER);
    const [dev] = [...cloud.instances.values()];
    const machine = await boot(dev!.id, { CAAS_ROOT: path.join(base, 'no-caas-here') });
    await powerDown(machine);
    // A job instance from the saved image: same disk, so the same per-boot script, but no dev tag.
    const job = cloud.add({ 'caas:identity': 'ab'.repeat(32) });
    job.input.MetadataOptions = { InstanceMetadataTags: 'enabled' };
    cloud.machine = job.id;
    await rebootMachine(cloud, machine, machineEnv({ CAAS_ROOT: path.join(base, 'no-caas-here') }));
    await waitFor(() => machine.log().includes('not a development instance'), 10_000, machine.log());
    await waitFor(() => !alive(machine.pid()!), 10_000, 'the boot script went on');
    expect(machine.poweredOff()).toEqual([]);
    expect(job.state).toBe('running');
  });
});

describe('caas dev: what it refuses, and says so', () => {
  it('an analysis whose blueprint names no image, and a store an instance cannot reach', async () => {
    const noImage = await caas('dev', 'launch', 'no-image', '--store', storeUrl, '--owner', OWNER);
    expect(noImage.code).toBe(2);
    expect(noImage.stderr).toContain('the blueprint of no-image names no "ami"');
    expect(noImage.stderr).toContain('--ami');
    const local = await caas('dev', 'launch', 'mock-wait', '--store', 'file:', '--owner', OWNER);
    expect(local.code).toBe(2);
    expect(local.stderr).toContain('caas dev needs --store');
    const type = await caas('dev', 'launch', 'mock-wait', '--store', storeUrl, '--owner', OWNER, '--instance-type', 'p3.16xlarge');
    expect(type.stderr).toContain('--instance-type p3.16xlarge is not allowed for mock-wait: use one of t3.micro, t3.small, c5.large');
    expect(cloud.calls('RunInstances')).toEqual([]);
  });

  it('no development instance, and two of them with no id given', async () => {
    const none = await caas('dev', 'extend', 'mock-wait', '--owner', 'bob');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no development instance of mock-wait for bob in us-east-1: start one with caas dev launch mock-wait');
    const first = cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': 'bob', 'caas:expiry': '2030-01-01T00:00:00Z' });
    const second = cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': 'bob', 'caas:expiry': '2030-01-01T00:00:00Z' }, 'stopped');
    const two = await caas('dev', 'extend', 'mock-wait', '--owner', 'bob');
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('2 development instances of mock-wait for bob');
    expect(two.stderr).toContain(`${first.id} (running`);
    expect(two.stderr).toContain(`${second.id} (stopped`);
    const named = await caas('dev', 'extend', 'mock-wait', second.id, '--owner', 'bob', '--by', '30m');
    expect(named.code, named.stderr).toBe(0);
    expect(second.tags['caas:expiry']).toBe('2030-01-01T00:30:00Z');
    const stranger = cloud.add({ Name: 'someone-elses' });
    const notDev = await caas('dev', 'terminate', 'mock-wait', stranger.id);
    expect(notDev.stderr).toContain(`${stranger.id} is not a caas development instance`);
    expect(cloud.calls('TerminateInstances')).toEqual([]);
  });

  it('an image that fails or is not ready in time leaves the blueprint and the repository as they were', async () => {
    const dev = cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': OWNER, 'caas:expiry': '2030-01-01T00:00:00Z' });
    const blueprint = readFileSync(blueprintFile(), 'utf8');
    const head = repo.head();

    cloud.imageFate = { state: 'failed', reason: 'Client.InternalError: the snapshot failed', looks: 2 };
    const failed = await caas('dev', 'save', 'mock-wait', '--owner', OWNER, '--interval', '0.05');
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/image ami-\w+ is failed \(Client\.InternalError: the snapshot failed\): the blueprint is unchanged/);

    cloud.imageFate = { state: 'pending', looks: 1 };
    const slow = await caas('dev', 'save', 'mock-wait', dev.id, '--owner', OWNER, '--interval', '0.05', '--timeout', '1s');
    expect(slow.code).toBe(2);
    expect(slow.stderr).toMatch(
      /image (ami-\w+) is still pending after \d+ s: the blueprint is unchanged; once it is available, caas dev save mock-wait --image \1/,
    );
    expect(readFileSync(blueprintFile(), 'utf8')).toBe(blueprint);
    expect(repo.head()).toBe(head);

    // Once the image is there, --image writes it without making another.
    const pending = [...cloud.images.values()].at(-1)!;
    cloud.imageFate = { state: 'available', looks: 0 };
    pending.looksLeft = 0;
    const adopted = await caas('dev', 'save', 'mock-wait', '--owner', OWNER, '--image', pending.id, '--interval', '0.05');
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(cloud.calls('CreateImage')).toHaveLength(2);
    expect(JSON.parse(readFileSync(blueprintFile(), 'utf8')).ami).toBe(pending.id);
    expect(git(repo.dir, 'log', '-1', '--format=%s')).toBe(`mock-wait: image ${pending.id}`);
  });

  it('a blueprint with uncommitted changes, before any image is made', async () => {
    cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': OWNER });
    const original = readFileSync(blueprintFile(), 'utf8');
    writeFileSync(blueprintFile(), original.replace('"deploy_limit": 4', '"deploy_limit": 5'));
    try {
      const dirty = await caas('dev', 'save', 'mock-wait', '--owner', OWNER, '--interval', '0.05');
      expect(dirty.code).toBe(2);
      expect(dirty.stderr).toContain(`${blueprintFile()} has uncommitted changes: commit or undo them first`);
      expect(cloud.calls('CreateImage')).toEqual([]);
    } finally {
      writeFileSync(blueprintFile(), original);
    }
  });

  it('a submit file the analysis refuses, before anything is written to the bucket', async () => {
    const dev = cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': OWNER, 'caas:expiry': '2030-01-01T00:00:00Z' });
    const submit = submitFile('broken.json', {
      dataname: `${GROUP}/inputs/session-1.txt`,
      configname: `${GROUP}/configs/broken.json`,
      timestamp: 'devbroken',
    });
    const refused = await caas('dev', 'test', 'mock-wait', submit, '--store', storeUrl, '--owner', OWNER);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${submit}: config ${GROUP}/configs/broken.json is not valid for mock-wait: wait:`);
    const local = await caas('dev', 'test', 'mock-wait', submit, '--owner', OWNER);
    expect(local.code).toBe(2);
    expect(local.stderr).toContain('caas dev needs --store');
    expect(await store.head(BUCKET, submitKey(GROUP, 'devbroken'))).toBeUndefined();
    const written = [];
    for await (const info of store.list(BUCKET, `.caas/dev/${dev.id}/`)) written.push(info.key);
    expect(written).toEqual([]);
  });

  it('a job the instance never takes is withdrawn, and its folder closed', async () => {
    cloud.add({ 'caas:dev': 'mock-wait', 'caas:owner': OWNER, 'caas:expiry': '2030-01-01T00:00:00Z' });
    const submit = submitFile('lonely.json', {
      dataname: `${GROUP}/inputs/session-1.txt`,
      configname: `${GROUP}/configs/quick.json`,
      timestamp: 'devlonely',
    });
    const lonely = await caas(
      'dev',
      'test',
      'mock-wait',
      submit,
      '--store',
      storeUrl,
      '--owner',
      OWNER,
      '--interval',
      '0.1',
      '--pickup-timeout',
      '1s',
    );
    expect(lonely.code).toBe(1);
    expect(lonely.stdout).toMatch(/failed: i-\w+ did not take the job within 1 s/);
    const end = (await store.get(BUCKET, folderKeys(BUCKET, GROUP, 'devlonely').end)).toString();
    expect(end).toMatch(/^FAILED\n.*did not take the job/);
  });
});
