import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DescribeInstancesCommand, EC2Client, type Instance, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Ec2Fleet } from '../backends/compute/ec2.ts';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { concluded, owner, recordDraft } from '../fixtures/records.ts';
import { startAttempt } from '../wrapper/attempts.ts';
import { findReapable } from '../wrapper/reap.ts';
import { reapOutput } from './support/reap-cli.ts';

const ec2 = mockClient(EC2Client);
const NOW = new Date('2030-01-01T12:00:00.000Z');
const HOUR = 3_600_000;
const runner = owner('runner-1');

let scratch: string;
let dbUrl: string;
let db: Database;
/** identity per scenario, and the instances EC2 "has" for them. */
const ids: Record<string, string> = {};
let instances: Instance[];

function instance(id: string, identity: string, extra: { attempt?: number; deadline?: Date } = {}): Instance {
  return {
    InstanceId: id,
    State: { Name: 'running' },
    Tags: [
      { Key: 'caas:identity', Value: identity },
      { Key: 'caas:analysis', Value: 'mock-wait' },
      { Key: 'caas:attempt', Value: String(extra.attempt ?? 1) },
      { Key: 'caas:deadline', Value: (extra.deadline ?? new Date(NOW.getTime() + HOUR)).toISOString() },
    ],
  };
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-reap-'));
  dbUrl = `sqlite:${path.join(scratch, 'metadata.sqlite')}`;
  db = await openDatabase(dbUrl, { home: scratch });
  const claim = (seed: string, at: Date, leaseMs = HOUR) => {
    const draft = recordDraft({ seed });
    ids[seed] = draft._id;
    return db.claim(draft._id, { draft, owner: runner, leaseMs, now: at });
  };
  await claim('held', NOW);
  await claim('overdue', NOW);
  await claim('finished', NOW);
  await db.finish(ids.finished!, runner, concluded('succeeded'));
  await claim('runner-died', new Date(NOW.getTime() - 2 * HOUR));
  // Attempt 1's runner died; attempt 2 now holds the job, so attempt 1's instance is an orphan.
  await claim('taken-over', new Date(NOW.getTime() - 2 * HOUR), 1000);
  await db.claim(ids['taken-over']!, { draft: recordDraft({ seed: 'taken-over' }), owner: owner('runner-2'), leaseMs: HOUR, now: NOW });
  // runner-2 found attempt 1 dead and started attempt 2 (while it decides, attempt 2 is only claimed).
  await db.update(ids['taken-over']!, owner('runner-2'), (r) => startAttempt(r, 2));
  // Attempt 1's runner died; runner-3 has claimed the job and is still deciding whether to adopt attempt 1.
  await claim('deciding', new Date(NOW.getTime() - 2 * HOUR), 1000);
  await db.claim(ids.deciding!, { draft: recordDraft({ seed: 'deciding' }), owner: owner('runner-3'), leaseMs: HOUR, now: NOW });
  ids.unknown = 'f'.repeat(64);
  instances = [
    instance('i-held', ids.held!),
    instance('i-overdue', ids.overdue!, { deadline: new Date(NOW.getTime() - 1000) }),
    instance('i-finished', ids.finished!),
    instance('i-runner-died', ids['runner-died']!),
    instance('i-taken-over', ids['taken-over']!, { attempt: 1 }),
    instance('i-taken-over-2', ids['taken-over']!, { attempt: 2 }),
    instance('i-deciding', ids.deciding!, { attempt: 1 }),
    instance('i-unknown', ids.unknown),
  ];
});
afterAll(async () => {
  await db.close();
  await rm(scratch, { recursive: true, force: true });
});
beforeEach(() => {
  ec2.reset();
  // Two pages, as DescribeInstances pages large accounts.
  ec2
    .on(DescribeInstancesCommand)
    .callsFake((input: { NextToken?: string }) =>
      input.NextToken === 'page-2'
        ? { Reservations: [{ Instances: instances.slice(4) }] }
        : { Reservations: [{ Instances: instances.slice(0, 4) }], NextToken: 'page-2' },
    );
  ec2.on(TerminateInstancesCommand).resolves({});
});

describe('findReapable', () => {
  it('finds instances past their deadline or whose job is no longer theirs; leaves held ones, and ones the next run will adopt, alone', async () => {
    const found = await findReapable(await new Ec2Fleet('us-east-1').list(), db, NOW);
    expect(Object.fromEntries(found.map((r) => [r.instance, r.why]))).toEqual({
      'i-overdue': [`past its deadline ${new Date(NOW.getTime() - 1000).toISOString()}`],
      'i-finished': ['its record is succeeded'],
      'i-taken-over': ['attempt 1 was superseded by attempt 2'],
      'i-unknown': ['no record for its identity'],
    });
    expect(found.find((r) => r.instance === 'i-overdue')).toMatchObject({ analysis: 'mock-wait', identity: ids.overdue, state: 'running' });
    expect(ec2.commandCalls(DescribeInstancesCommand)[0]!.args[0].input.Filters).toEqual([
      { Name: 'tag-key', Values: ['caas:identity'] },
      { Name: 'instance-state-name', Values: ['pending', 'running'] },
    ]);
    expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
  });
});

describe('caas reap', () => {
  function reap(...args: string[]): Promise<string> {
    return reapOutput(['--home', scratch, '--db', dbUrl, '--region', 'eu-west-1', ...args], NOW);
  }

  it('lists what it would terminate, and why, without terminating anything by default', async () => {
    const output = await reap();
    const lines = output.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^INSTANCE\s+ANALYSIS\s+IDENTITY\s+WHY$/);
    expect(lines.slice(1, -1).map((l) => l.split(/\s+/)[0])).toEqual(['i-overdue', 'i-finished', 'i-taken-over', 'i-unknown']);
    expect(lines.at(-1)).toBe('4 instance(s) to reap (dry run: nothing was terminated; add --execute to terminate them)');
    expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
  });

  it('terminates them with --execute', async () => {
    const output = await reap('--execute');
    expect(output.trimEnd().split('\n').at(-1)).toBe('terminated 4 instance(s)');
    expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input.InstanceIds)).toEqual([
      ['i-overdue', 'i-finished', 'i-taken-over', 'i-unknown'],
    ]);
  });
});
