import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IAM = path.join(ROOT, 'docs', 'iam');
const files = readdirSync(IAM)
  .filter((file) => file.endsWith('.json'))
  .sort();
const guide = readFileSync(path.join(ROOT, 'docs', 'aws.md'), 'utf8');

interface Statement {
  Sid?: unknown;
  Effect?: unknown;
  Action?: unknown;
  NotAction?: unknown;
  Resource?: unknown;
  NotResource?: unknown;
  Principal?: unknown;
  Condition?: unknown;
}

function policy(file: string): { Version?: unknown; Statement?: unknown } {
  return JSON.parse(readFileSync(path.join(IAM, file), 'utf8'));
}

const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

/** What a statement gets wrong as an IAM policy statement, one line per problem. */
function statementProblems(statement: Statement, where: string): string[] {
  const problems: string[] = [];
  if (statement.Effect !== 'Allow' && statement.Effect !== 'Deny') problems.push(`${where}: Effect must be "Allow" or "Deny"`);
  const actions = statement.Action ?? statement.NotAction;
  const actionList = asList(actions);
  if (actions === undefined || actionList.length === 0) problems.push(`${where}: no Action`);
  for (const action of actionList) {
    if (typeof action !== 'string' || !/^[a-z0-9-]+:[A-Za-z0-9*]+$/.test(action))
      problems.push(`${where}: ${JSON.stringify(action)} is not service:Action`);
  }
  const resources = statement.Resource ?? statement.NotResource;
  if (resources === undefined && statement.Principal === undefined) problems.push(`${where}: neither Resource nor Principal`);
  for (const resource of resources === undefined ? [] : asList(resources)) {
    if (typeof resource !== 'string' || !(resource === '*' || resource.startsWith('arn:aws:'))) {
      problems.push(`${where}: resource ${JSON.stringify(resource)} is neither "*" nor an ARN`);
    }
  }
  return problems;
}

/** The actions a policy allows, as written (no wildcard matching: the docs' policies name each one). */
function allowed(file: string): Set<string> {
  const statements = policy(file).Statement as Statement[];
  return new Set(statements.filter((s) => s.Effect === 'Allow').flatMap((s) => asList(s.Action) as string[]));
}

describe('the IAM policies of docs/aws.md', () => {
  it('are there: the runner policy, the instance policy and its trust policy', () => {
    expect(files).toEqual(expect.arrayContaining(['instance-policy.json', 'instance-trust-policy.json', 'runner-policy.json']));
  });

  it.each(files)('%s is an IAM policy document: Version 2012-10-17 and statements with Effect, Action and Resource', (file) => {
    const document = policy(file);
    expect(document.Version).toBe('2012-10-17');
    expect(Array.isArray(document.Statement) && document.Statement.length > 0, 'Statement is a non-empty array').toBe(true);
    const statements = document.Statement as Statement[];
    expect(statements.flatMap((statement, i) => statementProblems(statement, `Statement[${i}]`))).toEqual([]);
    const sids = statements.flatMap((s) => (s.Sid === undefined ? [] : [s.Sid]));
    expect(new Set(sids).size, 'Sids are unique').toBe(sids.length);
  });

  it.each(files)('%s is named in docs/aws.md, and every variable it uses is explained there', (file) => {
    expect(guide).toContain(`docs/iam/${file}`);
    const variables = [...readFileSync(path.join(IAM, file), 'utf8').matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]!);
    for (const name of new Set(variables)) expect(guide, `${name} in ${file}`).toContain(`\`${name}\``);
  });

  it('lets EC2 assume the instance role', () => {
    const [statement] = policy('instance-trust-policy.json').Statement as Statement[];
    expect(statement).toMatchObject({ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' });
  });

  it('allow the runner every EC2 call caas makes, and tagging at launch', () => {
    const sources = readdirSync(path.join(ROOT, 'backends', 'compute'))
      .filter((file) => file.startsWith('ec2') && file.endsWith('.ts'))
      .map((file) => readFileSync(path.join(ROOT, 'backends', 'compute', file), 'utf8'))
      .join('\n');
    const calls = [...new Set([...sources.matchAll(/new (\w+)Command\(/g)].map((m) => `ec2:${m[1]}`))];
    expect(calls).toEqual(expect.arrayContaining(['ec2:RunInstances', 'ec2:DescribeInstances', 'ec2:TerminateInstances']));
    const runner = allowed('runner-policy.json');
    for (const action of [...calls, 'ec2:CreateTags', 'iam:PassRole']) expect(runner.has(action), action).toBe(true);
  });

  it('allow a developer every EC2 call of caas dev, tagging what it creates, and the test jobs in the analysis bucket', () => {
    const source = readFileSync(path.join(ROOT, 'backends', 'compute', 'dev-instances.ts'), 'utf8');
    const calls = [...new Set([...source.matchAll(/new (\w+)Command\(/g)].map((m) => `ec2:${m[1]}`))];
    expect(calls).toEqual(expect.arrayContaining(['ec2:RunInstances', 'ec2:CreateTags', 'ec2:StopInstances', 'ec2:CreateImage']));
    const developer = allowed('developer-policy.json');
    for (const action of [...calls, 'iam:PassRole', 's3:GetObject', 's3:PutObject', 's3:ListBucket']) {
      expect(developer.has(action), action).toBe(true);
    }
  });

  it('allow a Batch runner every AWS Batch call caas makes', () => {
    const source = readFileSync(path.join(ROOT, 'backends', 'compute', 'batch.ts'), 'utf8');
    const calls = [...new Set([...source.matchAll(/new (\w+)Command\(/g)].map((m) => `batch:${m[1]}`))];
    expect(calls).toEqual(expect.arrayContaining(['batch:SubmitJob', 'batch:DescribeJobs', 'batch:TerminateJob', 'batch:ListJobs']));
    const runner = allowed('batch-runner-policy.json');
    for (const action of calls) expect(runner.has(action), action).toBe(true);
  });

  it('let the runner and the instance read and write job folders and read the data, and delete nothing', () => {
    for (const file of ['runner-policy.json', 'instance-policy.json']) {
      const actions = allowed(file);
      for (const action of ['s3:GetObject', 's3:PutObject', 's3:ListBucket']) expect(actions.has(action), `${file}: ${action}`).toBe(true);
      expect(
        [...actions].filter((a) => /delete/i.test(a)),
        file,
      ).toEqual([]);
    }
  });
});
