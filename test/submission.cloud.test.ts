import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { durableDbUrl, handler } from '../wrapper/s3-event-handler.ts';
import { folderKeys } from '../wrapper/submission.ts';
import { AnalysisRepo, durableScratchDir, mockJob, removeDir, runCli, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';
const MISSING =
  /analysis bucket mock-wait does not exist in s3:\/\/\?endpoint=\S+: create it \(aws s3 mb --endpoint-url \S+ s3:\/\/mock-wait\)/;

describe('an analysis bucket and the metadata DB in the cloud', () => {
  let base: string;
  let repo: AnalysisRepo;
  let server: S3rverHandle;
  let store: ObjectStore;

  beforeAll(async () => {
    base = scratchDir('submission-cloud');
    repo = new AnalysisRepo(base);
    server = await startS3rver();
    store = await openStore(`s3://?endpoint=${server.endpoint}`, { home: base });
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
    removeDir(base);
  });

  it('caas watch and caas run both refuse a missing S3 bucket, say how to create it, and create nothing', async () => {
    const home = path.join(base, 'refuse');
    const env = { ...s3Env(server.endpoint), NODE_NO_WARNINGS: '1', CAAS_ANALYSES: repo.dir };
    const global = ['--home', home, '--store', 's3://', '--s3-endpoint', server.endpoint];
    const watched = await runCli([...global, 'watch', '--bucket', BUCKET, '--once'], { env });
    expect(watched.code).toBe(2);
    expect(watched.stderr).toMatch(MISSING);

    const data = path.join(base, 'data', 'x.json');
    mkdirSync(path.dirname(data), { recursive: true });
    writeFileSync(data, '{}\n');
    const jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(jobs, `${mockJob('x', { wait: 0 }, data)}\n`);
    const ran = await runCli([...global, 'run', jobs, '--execute'], { env });
    expect(ran.code).toBe(2);
    expect(ran.stderr).toMatch(MISSING);
    expect(await store.bucketExists(BUCKET)).toBe(false);
  });

  it('caas watch makes a missing folder bucket, as caas run does', async () => {
    const home = path.join(base, 'folder');
    const watched = await runCli(['--home', home, 'watch', '--bucket', BUCKET, '--once'], { env: { CAAS_ANALYSES: repo.dir } });
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/processed 0 submit file\(s\)/);
    expect(existsSync(path.join(home, 'buckets', BUCKET))).toBe(true);
  });

  describe('the S3 event handler', () => {
    const names = ['CAAS_DB', 'CAAS_STORE', 'CAAS_COMPUTE', 'CAAS_HOME', 'CAAS_ANALYSES', 'AWS_ENDPOINT_URL'];
    const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
    const event = (key: string) => ({ Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: BUCKET }, object: { key } } }] });
    afterEach(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });

    it('refuses to start without a durable CAAS_DB, before it opens anything', async () => {
      delete process.env.CAAS_DB;
      await expect(handler(event('demo/submissions/t_submit.json'))).rejects.toThrow(
        /^CAAS_DB is not set: the S3 event handler keeps no records in a throwaway SQLite file under \/tmp; set CAAS_DB to mongodb:\/\//,
      );
      process.env.CAAS_DB = 'sqlite:/tmp/caas/metadata.sqlite';
      await expect(handler(event('demo/submissions/t_submit.json'))).rejects.toThrow(
        /CAAS_DB=sqlite:\/tmp\/caas\/metadata.sqlite: \/tmp\/caas\/metadata.sqlite is under \/tmp, which a function runtime discards/,
      );
      expect(() => durableDbUrl('sqlite:')).toThrow(/CAAS_DB=sqlite: names no file/);
      expect(() => durableDbUrl('   ')).toThrow(/CAAS_DB is not set/);
      expect(durableDbUrl('mongodb://caas:secret@db.example.org/caas')).toBe('mongodb://caas:secret@db.example.org/caas');
      expect(durableDbUrl('sqlite:/mnt/efs/caas.sqlite')).toBe('sqlite:/mnt/efs/caas.sqlite');
    });

    it('with a durable CAAS_DB, answers the object of an event and keeps its records there', async () => {
      await store.createBucket(BUCKET);
      const key = 'demo/submissions/h1_submit.json';
      await store.put(BUCKET, key, JSON.stringify({ dataname: 'inputs/d1.json', configname: 'configs/missing.json', timestamp: 'h1' }));
      const durable = durableScratchDir('event-handler-db');
      onTestFinished(() => removeDir(durable));
      const db = path.join(durable, 'metadata.sqlite');
      Object.assign(process.env, {
        CAAS_DB: `sqlite:${db}`,
        CAAS_STORE: 's3://',
        CAAS_COMPUTE: 'local',
        CAAS_HOME: path.join(base, 'handler-home'),
        CAAS_ANALYSES: repo.dir,
        AWS_ENDPOINT_URL: server.endpoint,
      });
      const [outcome] = await handler(event(key));
      expect(outcome).toMatchObject({ key, outcome: 'rejected' });
      expect((await store.get(BUCKET, folderKeys(BUCKET, 'demo', 'h1').end)).toString()).toMatch(/^REJECTED\n/);
      expect(existsSync(db)).toBe(true);
    });
  });
});
