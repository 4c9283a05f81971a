import path from 'node:path';
import {
  BatchClient,
  DescribeJobQueuesCommand,
  DescribeJobsCommand,
  type JobStatus,
  type JobSummary,
  ListJobsCommand,
  SubmitJobCommand,
  type SubmitJobCommandInput,
  TerminateJobCommand,
} from '@aws-sdk/client-batch';
import type { Blueprint } from '../../models/blueprint.ts';
import { describeIssues } from '../../models/issues.ts';
import { networkStoreExamples, storeReach } from '../storage/index.ts';
import { BatchSection } from './batch-section.ts';
import {
  type CaasMachine,
  ComputeConfigError,
  type EarlierMachine,
  type Fleet,
  type LaunchedJob,
  type Launcher,
  type LauncherOptions,
  type LaunchRequest,
} from './index.ts';
import { LaunchesByAttempt } from './launch-once.ts';
import { ClientsByRegion, EndMarkers, MonitorGroup, monitorRemote, type RemoteMachine } from './remote-monitor.ts';
import { containerScript } from './user-data.ts';

export interface BatchLauncherOptions extends LauncherOptions {
  /** One client for every region (tests); by default one per blueprint region. */
  client?: BatchClient;
  /** How often job states are read (default 15 s: DescribeJobs is rate-limited per account). */
  pollMs?: number;
  /** How long after a failed SubmitJob the queue is first asked for the job (default 2 s, then 4 s, 6 s). */
  submitRetryMs?: number;
  /** Where the image holds the analyses (default /opt/caas/analyses); analysis_dir is rewritten to it. */
  imageAnalysesDir?: string;
  /** Progress notes; default stderr. */
  log?: (line: string) => void;
}

/**
 * Batch hands the container overrides to ECS, which refuses more than 8192 characters of them when
 * the job starts (long after SubmitJob accepted it): checked before submitting, with room to spare.
 */
export const CONTAINER_OVERRIDES_LIMIT = 8000;
const LIVE_STATUSES: JobStatus[] = ['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING'];
/** Waiting for capacity: the job's max runtime has not started. */
const QUEUED_STATUSES = new Set<string>(['SUBMITTED', 'PENDING', 'RUNNABLE']);
const ENDED_STATUSES = new Set<string>(['SUCCEEDED', 'FAILED']);
/** Looks during which a fresh job may still be unknown to DescribeJobs (eventual consistency). */
const NOT_FOUND_GRACE_LOOKS = 8;
/** Batch refuses a job timeout under a minute. */
const MIN_TIMEOUT_S = 60;
/** The tag that says how long a job may run once started, for `caas reap` (its deadline moves with its start). */
const MAX_RUNTIME_TAG = 'caas:max-runtime-s';

/**
 * One AWS Batch job per caas job: a container from the blueprint's job definition runs the same
 * agent a local job runs, on the queue's compute environment (spot, Fargate, GPUs: the queue
 * decides). Batch retries nothing (caas owns retries) and times the job out at its max runtime;
 * the launcher watches its state like EC2's. Launching is idempotent per (identity, attempt): the
 * job is named after both, and a launch first looks for a job of that name in the queue.
 */
export class BatchLauncher implements Launcher {
  readonly name = 'batch';
  private readonly clients: ClientsByRegion<BatchClient>;
  /** Clients that send SubmitJob once per call: see submitOnce. */
  private readonly submitClients: ClientsByRegion<BatchClient>;
  private readonly pollMs: number;
  private readonly log: (line: string) => void;
  private readonly monitors = new MonitorGroup();
  /** A repeated launch gets the same job, even before ListJobs lists it. */
  private readonly launches = new LaunchesByAttempt();
  private readonly ends: EndMarkers;

  constructor(private readonly options: BatchLauncherOptions) {
    if (storeReach(options.storeUrl) !== 'network') {
      throw new ComputeConfigError(
        `--compute batch needs --store ${networkStoreExamples()}: a container cannot read "${options.storeUrl}" on this machine`,
      );
    }
    this.pollMs = options.pollMs ?? 15_000;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.clients = new ClientsByRegion((region) => new BatchClient({ region }), options.client);
    this.submitClients = new ClientsByRegion(submitClientIn, options.client);
    this.ends = new EndMarkers({ storeUrl: options.storeUrl });
  }

  launch(request: LaunchRequest): Promise<LaunchedJob> {
    return this.launches.launch(request, () => this.start(request));
  }

  refuse(analysis: string, blueprint: Blueprint): string | undefined {
    const section = readBatchSection(analysis, blueprint);
    return typeof section === 'string' ? section : undefined;
  }

  private async start(request: LaunchRequest): Promise<LaunchedJob> {
    const section = batchSection(request.analysis, request.blueprint);
    const client = this.clients.in(request.blueprint.region);
    const name = batchJobName(request.identity, request.attempt);
    // A job of this name for this very job folder that has not ended: this launch already happened
    // (a retried call). Ended jobs, and jobs of other folders or deployments, are not followed.
    const folder = `${request.spec.bucket}/${request.spec.group}/${request.spec.timestamp}`;
    const existing = await liveJobOfFolder(client, section.job_queue, name, folder);
    const jobId =
      existing ??
      (await this.submitOnce(client, this.submitClients.in(request.blueprint.region), this.submitInput(section, name, request), folder));
    return this.watch(client, request, jobId);
  }

  /**
   * SubmitJob is not idempotent: a request Batch accepted but whose answer was lost would, sent
   * again, start a second job of the same identity and attempt. So the SDK never retries it
   * (maxAttempts 1); after a transient failure the queue is asked for the job by name first, and
   * only a job that is not there is submitted again.
   */
  private async submitOnce(client: BatchClient, submitClient: BatchClient, input: SubmitJobCommandInput, folder: string): Promise<string> {
    for (let tries = 1; ; tries++) {
      try {
        const response = await submitClient.send(new SubmitJobCommand(input));
        if (!response.jobId) throw new Error(`SubmitJob for ${input.jobName} returned no job id`);
        return response.jobId;
      } catch (error) {
        if (tries >= SUBMIT_TRIES || !transient(error)) throw error;
        // ListJobs may not list a job the moment it is submitted: it is asked a few times, apart.
        for (let look = 1; look <= SUBMIT_LOOKS; look++) {
          await new Promise((resolve) => setTimeout(resolve, (this.options.submitRetryMs ?? 2000) * look));
          const submitted = await liveJobOfFolder(client, input.jobQueue!, input.jobName!, folder);
          if (submitted) return submitted;
        }
      }
    }
  }

  async machineAlive(machine: EarlierMachine): Promise<boolean> {
    return (await this.liveJobsOf(machine)).length > 0;
  }

  async stopMachine(machine: EarlierMachine, reason: string): Promise<boolean> {
    const ids = await this.liveJobsOf(machine);
    if (ids.length === 0) return false;
    this.log(`caas: terminating Batch job ${ids.join(', ')} (${reason})`);
    const client = this.clients.in(machine.blueprint.region);
    await Promise.all(ids.map((jobId) => client.send(new TerminateJobCommand({ jobId, reason: reason.slice(0, 200) }))));
    return true;
  }

  async close(): Promise<void> {
    this.monitors.close();
    this.clients.destroy();
    this.submitClients.destroy();
    await this.ends.close();
  }

  private async liveJobsOf(machine: EarlierMachine): Promise<string[]> {
    const section = batchSection(`the job ${machine.identity.slice(0, 12)}`, machine.blueprint);
    const jobs = await jobsNamed(
      this.clients.in(machine.blueprint.region),
      section.job_queue,
      batchJobName(machine.identity, machine.attempt),
    );
    return jobs.filter((job) => job.jobId && !ENDED_STATUSES.has(job.status ?? '')).map((job) => job.jobId!);
  }

  private submitInput(section: BatchSection, name: string, request: LaunchRequest): SubmitJobCommandInput {
    const { blueprint, spec } = request;
    const analysesDir = this.options.imageAnalysesDir ?? '/opt/caas/analyses';
    const script = containerScript({
      spec: { ...spec, analysis_dir: `${analysesDir.replace(/\/+$/, '')}/${path.posix.basename(spec.analysis_dir)}` },
      region: blueprint.region,
      environment: this.options.storeEnvironment,
      label: `caas job ${request.identity} attempt ${request.attempt} (${request.analysis})`,
    });
    const resources = [
      ...(section.vcpus ? [{ type: 'VCPU' as const, value: String(section.vcpus) }] : []),
      ...(section.memory_mib ? [{ type: 'MEMORY' as const, value: String(section.memory_mib) }] : []),
    ];
    const containerOverrides = { command: ['bash', '-c', script], ...(resources.length ? { resourceRequirements: resources } : {}) };
    const length = JSON.stringify(containerOverrides).length;
    if (length > CONTAINER_OVERRIDES_LIMIT) {
      throw new Error(
        `the job's container overrides are ${length} characters, over the ${CONTAINER_OVERRIDES_LIMIT} that fit in an ECS task: it lists ${spec.inputs.length} input URL(s); give the job a folder URL instead of every file`,
      );
    }
    const maxRuntimeS = blueprint.max_runtime_minutes * 60;
    return {
      jobName: name,
      jobQueue: section.job_queue,
      jobDefinition: section.job_definition,
      containerOverrides,
      // caas owns retries: a second try by Batch would be a second execution of the identity.
      retryStrategy: { attempts: 1 },
      // Batch counts it from the attempt's start, as caas counts the max runtime: queueing is free.
      timeout: { attemptDurationSeconds: Math.max(MIN_TIMEOUT_S, Math.ceil(maxRuntimeS)) },
      tags: {
        'caas:identity': request.identity,
        'caas:attempt': String(request.attempt),
        'caas:analysis': request.analysis,
        'caas:group': request.group,
        'caas:job': `${spec.bucket}/${spec.group}/${spec.timestamp}`,
        'caas:deadline': request.deadline.toISOString(),
        [MAX_RUNTIME_TAG]: String(Math.ceil(maxRuntimeS)),
      },
      propagateTags: true,
    };
  }

  private watch(client: BatchClient, request: LaunchRequest, jobId: string): LaunchedJob {
    const { spec } = request;
    const machine: RemoteMachine = {
      id: jobId,
      look: async () => {
        const job = (await client.send(new DescribeJobsCommand({ jobs: [jobId] }))).jobs?.find((j) => j.jobId === jobId);
        if (!job) return { kind: 'unlisted' };
        if (QUEUED_STATUSES.has(job.status ?? '')) return { kind: 'queued' };
        if (!ENDED_STATUSES.has(job.status ?? '')) return { kind: 'up' };
        return { kind: 'ended', why: job.statusReason ?? job.status ?? 'ended' };
      },
      stop: async (reason) => {
        await client.send(new TerminateJobCommand({ jobId, reason: reason.slice(0, 200) }));
      },
    };
    return monitorRemote(machine, {
      noun: 'Batch job',
      api: 'AWS Batch',
      pollMs: this.pollMs,
      deadline: request.deadline,
      maxRuntimeMinutes: request.blueprint.max_runtime_minutes,
      unlistedGraceLooks: NOT_FOUND_GRACE_LOOKS,
      endWritten: () => this.ends.written(spec),
      group: this.monitors,
      log: this.log,
    });
  }
}

/** Letters, digits, - and _, at most 128: the identity (64 hex digits) and the attempt fit whole. */
export function batchJobName(identity: string, attempt: number): string {
  return `caas-${identity}-${attempt}`;
}

function noBatchSection(analysis: string): string {
  return `the blueprint of ${analysis} has no "batch" section: add {"batch": {"job_queue": "…", "job_definition": "…"}} (a job definition whose image holds caas at /opt/caas; see docs/aws.md)`;
}

/**
 * The blueprint's batch section, read with its own schema (the blueprint model lets it through
 * unread), or why the launcher cannot use it.
 */
function readBatchSection(analysis: string, blueprint: Blueprint): BatchSection | string {
  if (blueprint.batch === undefined) return noBatchSection(analysis);
  const parsed = BatchSection.safeParse(blueprint.batch);
  if (parsed.success) return parsed.data;
  return `the blueprint of ${analysis} has an invalid "batch" section: ${describeIssues(parsed.error, 'batch')}`;
}

function batchSection(analysis: string, blueprint: Blueprint): BatchSection {
  const section = readBatchSection(analysis, blueprint);
  if (typeof section === 'string') throw new Error(section);
  return section;
}

/** The id of a job of this name and job folder that has not ended, if the queue has one. */
async function liveJobOfFolder(client: BatchClient, jobQueue: string, name: string, folder: string): Promise<string | undefined> {
  const live = (await jobsNamed(client, jobQueue, name)).filter((job) => job.jobId && !ENDED_STATUSES.has(job.status ?? ''));
  if (live.length === 0) return undefined;
  const details = await client.send(new DescribeJobsCommand({ jobs: live.map((job) => job.jobId!) }));
  return details.jobs?.find((job) => job.tags?.['caas:job'] === folder)?.jobId;
}

/** Jobs of the queue with exactly this name, newest first (ListJobs' JOB_NAME filter ignores case). */
async function jobsNamed(client: BatchClient, jobQueue: string, name: string): Promise<JobSummary[]> {
  const found: JobSummary[] = [];
  let nextToken: string | undefined;
  do {
    const page = await client.send(new ListJobsCommand({ jobQueue, filters: [{ name: 'JOB_NAME', values: [name] }], nextToken }));
    found.push(...(page.jobSummaryList ?? []).filter((job) => job.jobName === name));
    nextToken = page.nextToken;
  } while (nextToken);
  return found;
}

const SUBMIT_TRIES = 3;
const SUBMIT_LOOKS = 3;

/** The client SubmitJob goes through: the SDK's own retries would send a request Batch may already have taken. */
export function submitClientIn(region: string): BatchClient {
  return new BatchClient({ region, maxAttempts: 1 });
}

const NETWORK_ERRORS = new Set(['TimeoutError', 'RequestTimeout', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

/** A failure worth another SubmitJob: the service's fault, throttling, or no answer at all (the network). */
function transient(error: unknown): boolean {
  const { name = '', code = '', $fault } = error as { name?: string; code?: string; $fault?: string };
  return $fault === 'server' || /Throttl|TooManyRequests/.test(name) || NETWORK_ERRORS.has(name) || NETWORK_ERRORS.has(code);
}

const DESCRIBE_BATCH = 100;

/** Every caas job of a region's queues that has not ended, for `caas reap`. */
export class BatchFleet implements Fleet {
  readonly noun = 'job';
  private readonly client: BatchClient;

  constructor(region: string, client?: BatchClient) {
    this.client = client ?? new BatchClient({ region });
  }

  async list(): Promise<CaasMachine[]> {
    const queues: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.client.send(new DescribeJobQueuesCommand({ nextToken }));
      for (const queue of page.jobQueues ?? []) if (queue.jobQueueArn) queues.push(queue.jobQueueArn);
      nextToken = page.nextToken;
    } while (nextToken);
    const ids: string[] = [];
    for (const jobQueue of queues) {
      for (const jobStatus of LIVE_STATUSES) {
        let token: string | undefined;
        do {
          const page = await this.client.send(new ListJobsCommand({ jobQueue, jobStatus, nextToken: token }));
          for (const job of page.jobSummaryList ?? []) if (job.jobId && job.jobName?.startsWith('caas-')) ids.push(job.jobId);
          token = page.nextToken;
        } while (token);
      }
    }
    const machines: CaasMachine[] = [];
    for (let i = 0; i < ids.length; i += DESCRIBE_BATCH) {
      const page = await this.client.send(new DescribeJobsCommand({ jobs: ids.slice(i, i + DESCRIBE_BATCH) }));
      for (const job of page.jobs ?? []) {
        const tags = { ...(job.tags ?? {}) };
        if (!job.jobId || !tags['caas:identity']) continue;
        // Its deadline runs from its start: a queued job is never past it, a started one is at start + max runtime.
        const maxRuntimeMs = Number(tags[MAX_RUNTIME_TAG]) * 1000;
        if (Number.isFinite(maxRuntimeMs) && maxRuntimeMs > 0) {
          const from = job.startedAt ?? Date.now();
          tags['caas:deadline'] = new Date(Math.max(from + maxRuntimeMs, job.startedAt ? 0 : Date.now() + maxRuntimeMs)).toISOString();
        }
        machines.push({ id: job.jobId, state: job.status ?? 'unknown', tags });
      }
    }
    return machines;
  }

  async terminate(ids: readonly string[]): Promise<void> {
    for (const jobId of ids) await this.client.send(new TerminateJobCommand({ jobId, reason: 'caas reap' }));
  }

  close(): void {
    this.client.destroy();
  }
}
