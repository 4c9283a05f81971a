import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  BatchClient,
  DescribeJobQueuesCommand,
  DescribeJobsCommand,
  ListJobsCommand,
  SubmitJobCommand,
  TerminateJobCommand,
} from '@aws-sdk/client-batch';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { BatchFleet, BatchLauncher, batchJobName, submitClientIn } from '../backends/compute/batch.ts';
import { blueprintIssues, type LaunchRequest } from '../backends/compute/index.ts';
import { Blueprint } from '../models/blueprint.ts';
import { runBatch } from '../wrapper/run.ts';
import { AnalysisRepo, mockJob, removeDir, scratchDir } from './support/workspace.ts';

/** What AWS Batch adds to the launcher contract (test/launcher.conformance.test.ts runs the rest). */
const batch = mockClient(BatchClient);
const IDENTITY = 'ab'.repeat(32);

function request(blueprint: Record<string, unknown>): LaunchRequest {
  return {
    identity: IDENTITY,
    attempt: 2,
    analysis: 'mock-wait',
    group: 'caas',
    blueprint: Blueprint.parse({ bucket: 'mock-wait', ...blueprint }),
    instanceType: 't3.micro',
    deadline: new Date(Date.now() + 60_000),
    spec: {
      store: 's3://',
      store_settings: {},
      bucket: 'mock-wait',
      group: 'caas',
      timestamp: '20260101T000000000Z-abababab',
      dataname: 's3://mock-wait/caas/inputs/data.txt',
      inputs: ['s3://mock-wait/caas/inputs/data.txt'],
      input_checks: {},
      configname: 'c.json',
      command: ['true'],
      analysis_dir: '/opt/caas/analyses/mock-wait',
      instance: 'batch',
      max_runtime_s: 60,
      status_interval_ms: 2000,
      log_limit_bytes: 1024,
      environment: { set: {}, pass: [] },
    },
  };
}

const launcher = () =>
  new BatchLauncher({
    storeUrl: 's3://',
    client: new BatchClient({ region: 'us-east-1' }),
    pollMs: 60_000,
    submitRetryMs: 10,
    log: () => {},
  });

beforeEach(() => batch.reset());

describe('AWS Batch', () => {
  it('needs an S3 store and a "batch" section in the blueprint, and says how to add one', async () => {
    expect(() => new BatchLauncher({ storeUrl: 'file:' })).toThrow(/--compute batch needs --store s3:\/\//);
    await expect(launcher().launch(request({}))).rejects.toThrow(/has no "batch" section: add \{"batch": \{"job_queue"/);
  });

  it('reads its section with its own schema: an incomplete one is refused with the path of the missing field', () => {
    const incomplete = { bucket: 'mock-wait', batch: { job_queue: 'q' } };
    // The blueprint model lets sections through; the launcher and the registry's check read them.
    expect(launcher().refuse('mock-wait', Blueprint.parse(incomplete))).toMatch(
      /^the blueprint of mock-wait has an invalid "batch" section: batch\.job_definition: /,
    );
    expect(blueprintIssues(incomplete).map((issue) => issue.path.join('.'))).toEqual(['batch.job_definition']);
    expect(launcher().refuse('mock-wait', Blueprint.parse({ ...incomplete, batch: { job_queue: 'q', job_definition: 'caas:3' } }))).toBe(
      undefined,
    );
  });

  it('names each job after its identity and attempt, within Batch’s 128 letters, digits, - and _', () => {
    const name = batchJobName(IDENTITY, 12);
    expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/);
    expect(name).toContain(IDENTITY);
  });

  it('follows a live job of the same attempt and job folder (a retried launch) instead of submitting another', async () => {
    const folder = 'mock-wait/caas/20260101T000000000Z-abababab';
    batch
      .on(ListJobsCommand)
      .resolves({ jobSummaryList: [{ jobId: 'job-earlier', jobName: batchJobName(IDENTITY, 2), status: 'RUNNABLE', createdAt: 1 }] });
    batch.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-earlier', status: 'RUNNABLE', tags: { 'caas:job': folder } }] as never });
    const made = launcher();
    try {
      const job = await made.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3', vcpus: 2, memory_mib: 4096 } }));
      expect(job.instance).toBe('job-earlier');
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(0);
      expect(batch.commandCalls(ListJobsCommand)[0]!.args[0].input).toMatchObject({
        jobQueue: 'q',
        filters: [{ name: 'JOB_NAME', values: [batchJobName(IDENTITY, 2)] }],
      });
    } finally {
      await made.close();
    }
  });

  it.each([
    ['has ended', 'SUCCEEDED', 'mock-wait/caas/20260101T000000000Z-abababab'],
    ['belongs to another job folder (another deployment, a reset DB)', 'RUNNING', 'other-bucket/caas/20250101T000000000Z-abababab'],
  ])('does not follow a job of the same name that %s: it submits its own', async (_, status, folder) => {
    batch
      .on(ListJobsCommand)
      .resolves({ jobSummaryList: [{ jobId: 'job-other', jobName: batchJobName(IDENTITY, 2), status: status as 'RUNNING' }] });
    batch.on(DescribeJobsCommand).callsFake((input: { jobs: string[] }) => ({
      jobs: input.jobs.map((jobId) => ({ jobId, status: jobId === 'job-other' ? status : 'RUNNING', tags: { 'caas:job': folder } })),
    }));
    batch.on(SubmitJobCommand).resolves({ jobId: 'job-own', jobName: batchJobName(IDENTITY, 2) });
    const made = launcher();
    try {
      const job = await made.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3' } }));
      expect(job.instance).toBe('job-own');
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(1);
    } finally {
      await made.close();
    }
  });

  it('refuses container overrides that would not fit in an ECS task (8192 characters), before submitting', async () => {
    batch.on(ListJobsCommand).resolves({ jobSummaryList: [] });
    const many = request({ batch: { job_queue: 'q', job_definition: 'caas:3' } });
    many.spec.inputs = Array.from({ length: 150 }, (_, i) => `s3://mock-wait/caas/inputs/session-${i}/units.spikes.json`);
    const made = launcher();
    try {
      await expect(made.launch(many)).rejects.toThrow(
        /container overrides are \d+ characters, over the 8000 that fit in an ECS task: it lists 150 input URL/,
      );
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(0);
    } finally {
      await made.close();
    }
  });

  it('submits with no Batch retries, the max runtime as timeout, the blueprint’s resources and caas tags', async () => {
    batch.on(ListJobsCommand).resolves({ jobSummaryList: [] });
    batch.on(SubmitJobCommand).resolves({ jobId: 'job-new', jobName: batchJobName(IDENTITY, 2) });
    batch.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-new', status: 'RUNNING' }] as never });
    const made = launcher();
    try {
      await made.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3', vcpus: 2, memory_mib: 4096 } }));
      const input = batch.commandCalls(SubmitJobCommand)[0]!.args[0].input;
      expect(input).toMatchObject({
        jobName: batchJobName(IDENTITY, 2),
        jobQueue: 'q',
        jobDefinition: 'caas:3',
        retryStrategy: { attempts: 1 },
        propagateTags: true,
        tags: { 'caas:identity': IDENTITY, 'caas:attempt': '2', 'caas:analysis': 'mock-wait' },
        containerOverrides: {
          resourceRequirements: [
            { type: 'VCPU', value: '2' },
            { type: 'MEMORY', value: '4096' },
          ],
        },
      });
      // Batch counts the timeout from the attempt's start: the whole max runtime, whatever the queue.
      expect(input.timeout!.attemptDurationSeconds).toBe(3600);
      expect(input.tags).toMatchObject({ 'caas:max-runtime-s': '3600' });
      // The agent's heartbeat names the machine by the job id Batch gives the container.
      expect(input.containerOverrides!.command![2]).toContain('CAAS_INSTANCE_ID="$' + '{AWS_BATCH_JOB_ID:-}"');
    } finally {
      await made.close();
    }
  });

  it('a SubmitJob whose answer is lost is not sent again once the queue lists its job: one job per attempt', async () => {
    const folder = 'mock-wait/caas/20260101T000000000Z-abababab';
    let accepted = false;
    batch.on(ListJobsCommand).callsFake(() => ({
      jobSummaryList: accepted ? [{ jobId: 'job-accepted', jobName: batchJobName(IDENTITY, 2), status: 'RUNNABLE' }] : [],
    }));
    batch
      .on(DescribeJobsCommand)
      .resolves({ jobs: [{ jobId: 'job-accepted', status: 'RUNNABLE', tags: { 'caas:job': folder } }] as never });
    // Batch took the job, then the connection dropped before its answer arrived.
    batch.on(SubmitJobCommand).callsFake(() => {
      accepted = true;
      throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
    });
    const made = launcher();
    try {
      const job = await made.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3' } }));
      expect(job.instance).toBe('job-accepted');
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(1);
    } finally {
      await made.close();
    }
  });

  it('a SubmitJob refused for a transient reason is sent again; one refused for the request is not', async () => {
    batch.on(ListJobsCommand).resolves({ jobSummaryList: [] });
    batch.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-second', status: 'RUNNING' }] as never });
    batch
      .on(SubmitJobCommand)
      .rejectsOnce(Object.assign(new Error('Too many requests'), { name: 'TooManyRequestsException', $fault: 'client' }))
      .resolves({ jobId: 'job-second', jobName: batchJobName(IDENTITY, 2) });
    const made = launcher();
    try {
      expect((await made.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3' } }))).instance).toBe('job-second');
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(2);
    } finally {
      await made.close();
    }
    for (const error of [
      Object.assign(new Error('job definition caas:3 is INACTIVE'), { name: 'ClientException', $fault: 'client' }),
      new TypeError('a bug, not the network'),
    ]) {
      batch.reset();
      batch.on(ListJobsCommand).resolves({ jobSummaryList: [] });
      batch.on(SubmitJobCommand).rejects(error);
      const refused = launcher();
      try {
        await expect(refused.launch(request({ batch: { job_queue: 'q', job_definition: 'caas:3' } }))).rejects.toThrow(error.message);
        expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(1);
      } finally {
        await refused.close();
      }
    }
  });

  it("the SubmitJob client never retries on its own (the SDK's retries would resend a request Batch may have taken)", async () => {
    const client = submitClientIn('us-east-1');
    try {
      expect(await client.config.maxAttempts()).toBe(1);
    } finally {
      client.destroy();
    }
  });

  it('lists the caas jobs of every queue that have not ended, for caas reap, and terminates them', async () => {
    batch
      .on(DescribeJobQueuesCommand)
      .resolves({ jobQueues: [{ jobQueueArn: 'arn:q1', jobQueueName: 'q1', state: 'ENABLED', priority: 1, computeEnvironmentOrder: [] }] });
    batch.on(ListJobsCommand).callsFake((input: { jobStatus?: string }) => ({
      jobSummaryList:
        input.jobStatus === 'RUNNING'
          ? [
              { jobId: 'j1', jobName: batchJobName(IDENTITY, 1) },
              { jobId: 'j2', jobName: 'someone-elses-job' },
            ]
          : [],
    }));
    batch
      .on(DescribeJobsCommand)
      .resolves({ jobs: [{ jobId: 'j1', status: 'RUNNING', tags: { 'caas:identity': IDENTITY, 'caas:analysis': 'mock-wait' } }] as never });
    batch.on(TerminateJobCommand).resolves({});
    const fleet = new BatchFleet('us-east-1', new BatchClient({ region: 'us-east-1' }));
    try {
      expect(await fleet.list()).toEqual([
        { id: 'j1', state: 'RUNNING', tags: { 'caas:identity': IDENTITY, 'caas:analysis': 'mock-wait' } },
      ]);
      await fleet.terminate(['j1']);
      expect(batch.commandCalls(TerminateJobCommand).map((c) => c.args[0].input.jobId)).toEqual(['j1']);
    } finally {
      fleet.close();
    }
  });

  it('a blueprint without a batch section is refused before any bucket is made or job claimed (exit 2)', async () => {
    const base = scratchDir('batch-refused');
    try {
      const repo = new AnalysisRepo(base);
      const data = path.join(base, 'session.json');
      writeFileSync(data, '{}\n');
      const jobs = path.join(base, 'jobs.jsonl');
      writeFileSync(jobs, `${mockJob('refused', { wait: 0 }, data)}\n`);
      const home = path.join(base, 'home');
      process.env.CAAS_ANALYSES = repo.dir;
      const run = runBatch(
        {
          source: jobs,
          home,
          storeUrl: 's3://?endpoint=http://127.0.0.1:9',
          dbUrl: `sqlite:${path.join(base, 'caas.sqlite')}`,
          compute: 'batch',
          execute: true,
          concurrency: 1,
          allowDirty: false,
          leaseMs: 60_000,
        },
        { plan: () => {}, warn: () => {}, result: () => {} },
      );
      await expect(run).rejects.toMatchObject({
        exitCode: 2,
        message: expect.stringMatching(/the blueprint of mock-wait has no "batch" section/),
      });
      expect(batch.commandCalls(SubmitJobCommand)).toHaveLength(0);
      // No metadata DB was written (planning opens it read-only), no workspace made.
      expect(existsSync(path.join(base, 'caas.sqlite'))).toBe(false);
      expect(existsSync(home) ? readdirSync(home) : []).toEqual([]);
    } finally {
      delete process.env.CAAS_ANALYSES;
      removeDir(base);
    }
  });
});
