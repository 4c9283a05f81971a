import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Blueprint } from '../../models/blueprint.ts';
import { type BlueprintImport, importNeuroCaasBlueprint } from '../../models/neurocaas-blueprint.ts';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/neurocaas/stack_config_template.json');
/** A NeuroCAAS blueprint shaped like the public ones in ncap_blueprints/ (written for these tests). */
const fixture = () => JSON.parse(readFileSync(FIXTURE, 'utf8')) as Source;

/** The fixture's shape, as far as the tests change it. */
interface Source {
  [field: string]: unknown;
  Lambda: Record<string, unknown> & { LambdaConfig: Record<string, unknown> };
  UXData: { Affiliates: Record<string, unknown>[] };
}

function imported(source: unknown): Extract<BlueprintImport, { ok: true }> {
  const result = importNeuroCaasBlueprint(source);
  if (!result.ok) throw new Error(`not imported: ${result.problems.join('; ')}`);
  return result;
}

function problems(source: unknown): string[] {
  const result = importNeuroCaasBlueprint(source);
  return result.ok ? [] : result.problems;
}

/** The fixture with one LambdaConfig field set (undefined: removed). */
function withLambda(field: string, value: unknown): Source {
  const source = fixture();
  if (value === undefined) delete source.Lambda.LambdaConfig[field];
  else source.Lambda.LambdaConfig[field] = value;
  return source;
}

describe('importing a NeuroCAAS blueprint', () => {
  it('maps each NeuroCAAS setting to its caas field, and the result is a valid caas blueprint', () => {
    const { blueprint } = imported(fixture());
    expect(blueprint).toEqual({
      bucket: 'spikesort-ncap-web',
      region: 'us-east-1',
      ami: 'ami-0a1b2c3d4e5f60718',
      instance_type: 'p3.2xlarge',
      iam_instance_profile: 'SSMRole',
      max_runtime_minutes: 2867,
      deploy_limit: 50,
      groups: [
        { name: 'debuggers', users: ['devuser1'], budget: { usd: 250, period: 'total' } },
        { name: 'hippocampuslab', users: ['alice', 'bob@example.org'], budget: { usd: 250, period: 'total' } },
      ],
    });
    expect(Blueprint.safeParse(blueprint).success).toBe(true);
  });

  it('takes numbers as NeuroCAAS writes them, as JSON numbers or as text', () => {
    const asText = withLambda('DEPLOY_LIMIT', '100');
    asText.Lambda.LambdaConfig.MAXCOST = '300';
    asText.Lambda.LambdaConfig.SSM_TIMEOUT = ' 3600 ';
    const asNumbers = withLambda('DEPLOY_LIMIT', 100);
    asNumbers.Lambda.LambdaConfig.MAXCOST = 300;
    asNumbers.Lambda.LambdaConfig.SSM_TIMEOUT = 3600;
    expect(imported(asText).blueprint).toEqual(imported(asNumbers).blueprint);
    expect(imported(asText).blueprint).toMatchObject({
      deploy_limit: 100,
      max_runtime_minutes: 60,
      groups: [{ budget: { usd: 300 } }, {}],
    });
  });

  it("the run time limit is SSM_TIMEOUT in seconds; EXECUTION_TIMEOUT is the job manager Lambda's, with no meaning here", () => {
    const { blueprint, notes } = imported(withLambda('SSM_TIMEOUT', 5400));
    expect(blueprint.max_runtime_minutes).toBe(90);
    expect(notes).toContainEqual({
      field: 'Lambda.LambdaConfig.SSM_TIMEOUT',
      to: 'max_runtime_minutes',
      note: expect.stringMatching(/5400 s is 90 minutes \(/),
    });
    expect(notes).toContainEqual({
      field: 'Lambda.LambdaConfig.EXECUTION_TIMEOUT',
      note: expect.stringMatching(/^no meaning in caas: the timeout of NeuroCAAS's job manager Lambda in seconds/),
    });
    const missing = imported(withLambda('SSM_TIMEOUT', undefined));
    expect(missing.blueprint).not.toHaveProperty('max_runtime_minutes');
    expect(missing.notes).toContainEqual({ field: 'Lambda.LambdaConfig.SSM_TIMEOUT', note: expect.stringMatching(/default, 60 minutes/) });
  });

  it('names every field with no meaning here, and why', () => {
    const { notes } = imported(fixture());
    const ignored = new Map(notes.filter((n) => n.to === undefined).map((n) => [n.field, n.note]));
    expect(ignored.get('STAGE')).toMatch(/^no meaning in caas: NeuroCAAS's development stage/);
    expect(ignored.get('Lambda.CodeUri')).toMatch(/job manager Lambda; caas's job manager is `caas watch`/);
    expect(ignored.get('Lambda.Handler')).toMatch(/job manager is `caas watch`/);
    expect(ignored.get('Lambda.LambdaConfig.COMMAND')).toMatch(
      /caas's agent plays run_main\.sh's role, and the analysis declares its own command/,
    );
    expect(ignored.get('Lambda.LambdaConfig.SECURITY_GROUPS')).toMatch(
      /a security group name .* put the group's id .* in security_group_ids/,
    );
    expect(ignored.get('UXData.Affiliates.1.ContactEmail')).toMatch(/caas sends no mail/);
    for (const field of [
      'Lambda.Launch',
      'Lambda.LambdaConfig.REGION',
      'Lambda.LambdaConfig.KEY_NAME',
      'Lambda.LambdaConfig.WORKING_DIRECTORY',
      'Lambda.LambdaConfig.SHUTDOWN_BEHAVIOR',
      'Lambda.LambdaConfig.CONFIG',
      'Lambda.LambdaConfig.MISSING_CONFIG_ERROR',
      'Lambda.LambdaConfig.LAUNCH',
      'Lambda.LambdaConfig.LOGFILE',
      'Lambda.LambdaConfig.MONITOR',
      'Lambda.LambdaConfig.LOGDIR',
      'Lambda.LambdaConfig.OUTDIR',
      'Lambda.LambdaConfig.INDIR',
      'UXData.Affiliates.0.UserInput',
      'UXData.Affiliates.1.PipelinePath',
      'UXData.Affiliates.1.PipelineDir',
    ]) {
      expect(ignored.get(field), field).toMatch(/^no meaning in caas: \S/);
    }
    // Every field of the source is accounted for: mapped, or named as having no meaning.
    const mapped = notes.filter((n) => n.to !== undefined).map((n) => n.field);
    expect(mapped).toEqual(
      expect.arrayContaining([
        'PipelineName',
        'REGION',
        'Lambda.LambdaConfig.AMI',
        'Lambda.LambdaConfig.INSTANCE_TYPE',
        'Lambda.LambdaConfig.IAM_ROLE',
        'Lambda.LambdaConfig.SSM_TIMEOUT',
        'Lambda.LambdaConfig.DEPLOY_LIMIT',
        'Lambda.LambdaConfig.MAXCOST',
        'UXData.Affiliates.0.AffiliateName',
        'UXData.Affiliates.0.UserNames',
      ]),
    );
    const source = fixture();
    const leaves = [
      ...Object.keys(source).filter((k) => !['Lambda', 'UXData'].includes(k)),
      ...Object.keys(source.Lambda)
        .filter((k) => k !== 'LambdaConfig')
        .map((k) => `Lambda.${k}`),
      ...Object.keys(source.Lambda.LambdaConfig).map((k) => `Lambda.LambdaConfig.${k}`),
      ...source.UXData.Affiliates.flatMap((a: object, i: number) => Object.keys(a).map((k) => `UXData.Affiliates.${i}.${k}`)),
    ];
    expect(leaves.filter((field) => !notes.some((n) => n.field === field))).toEqual([]);
  });

  it('a security group id, a region only in LambdaConfig, no affiliates and unknown fields', () => {
    const source = withLambda('SECURITY_GROUPS', 'sg-0123456789abcdef0');
    delete source.REGION;
    source.Lambda.LambdaConfig.REGION = 'eu-west-1';
    source.UXData.Affiliates = [];
    source.PipelineVersion = '2';
    source.Lambda.LambdaConfig.NEW_SETTING = 1;
    const { blueprint, notes } = imported(source);
    expect(blueprint).toMatchObject({ security_group_ids: ['sg-0123456789abcdef0'], region: 'eu-west-1' });
    expect(blueprint).not.toHaveProperty('groups');
    expect(notes).toContainEqual({ field: 'UXData.Affiliates', note: expect.stringMatching(/default group, "caas"/) });
    expect(notes).toContainEqual({ field: 'Lambda.LambdaConfig.MAXCOST', note: 'no affiliates, so no group to cap' });
    expect(notes).toContainEqual({
      field: 'PipelineVersion',
      note: expect.stringMatching(/not a NeuroCAAS blueprint field caas knows of/),
    });
    expect(notes).toContainEqual({
      field: 'Lambda.LambdaConfig.NEW_SETTING',
      note: expect.stringMatching(/not a NeuroCAAS blueprint field/),
    });
  });

  it('a region that differs between REGION and LambdaConfig.REGION: REGION wins, and the note says so', () => {
    const { blueprint, notes } = imported(withLambda('REGION', 'eu-west-1'));
    expect(blueprint.region).toBe('us-east-1');
    expect(notes).toContainEqual({
      field: 'Lambda.LambdaConfig.REGION',
      note: expect.stringMatching(/differs from REGION \("us-east-1"\)/),
    });
  });
});

describe('what cannot become a caas blueprint is named by its NeuroCAAS path, with what is expected', () => {
  const renamed = (name: string) => ({ ...fixture(), PipelineName: name });
  it.each([
    {
      name: 'a pipeline name S3 refuses',
      source: () => renamed('Spike_Sorter'),
      says: /^PipelineName: "Spike_Sorter" cannot name the analysis bucket \(NeuroCAAS names the bucket after the pipeline\): expected an S3 bucket name/,
    },
    {
      name: 'a placeholder pipeline name',
      source: () => renamed('bucket name. must be lowercase alphanumeric (dashes okay)'),
      says: /^PipelineName: .* cannot name the analysis bucket/,
    },
    { name: 'a two-letter pipeline name', source: () => renamed('ab'), says: /^PipelineName: "ab" cannot name/ },
    {
      name: 'a placeholder AMI',
      source: () => withLambda('AMI', 'instance id'),
      says: /^Lambda\.LambdaConfig\.AMI: "instance id" is not an AMI id: expected an id like ami-/,
    },
    {
      name: 'an empty instance type',
      source: () => withLambda('INSTANCE_TYPE', ''),
      says: /^Lambda\.LambdaConfig\.INSTANCE_TYPE: "" is not an EC2 instance type: expected one such as p3\.2xlarge/,
    },
    {
      name: 'a placeholder cost',
      source: () => withLambda('MAXCOST', 'maximum per user allowed cost (integer) before lockout'),
      says: /^Lambda\.LambdaConfig\.MAXCOST: expected a number, or text holding one \(NeuroCAAS writes "300" for 300\), not "maximum per user/,
    },
    {
      name: 'a cost that is a flag',
      source: () => withLambda('MAXCOST', true),
      says: /^Lambda\.LambdaConfig\.MAXCOST: expected a number, or text holding one/,
    },
    {
      name: 'a negative cost',
      source: () => withLambda('MAXCOST', '-5'),
      says: /^Lambda\.LambdaConfig\.MAXCOST: -5: expected a spending cap of 0 US dollars or more/,
    },
    {
      name: 'a fractional deploy limit',
      source: () => withLambda('DEPLOY_LIMIT', '1.5'),
      says: /^Lambda\.LambdaConfig\.DEPLOY_LIMIT: 1\.5: expected a whole number of instances, 1 or more/,
    },
    {
      name: 'a zero run time',
      source: () => withLambda('SSM_TIMEOUT', 0),
      says: /^Lambda\.LambdaConfig\.SSM_TIMEOUT: 0 seconds: expected a run time limit above 0 seconds/,
    },
    {
      name: 'a placeholder region',
      source: () => ({ ...fixture(), REGION: 'AWS region code (example us-east-1)' }),
      says: /^REGION: "AWS region code \(example us-east-1\)" is not an AWS region: expected a region code such as us-east-1/,
    },
    {
      name: 'an affiliate name that cannot be a folder',
      source: () => {
        const source = fixture();
        source.UXData.Affiliates[1]!.AffiliateName = '../lab';
        return source;
      },
      says: /^UXData\.Affiliates\.1\.AffiliateName: "\.\.\/lab" cannot name a group folder: expected letters, digits/,
    },
    {
      name: 'an affiliate listed twice',
      source: () => {
        const source = fixture();
        source.UXData.Affiliates[1]!.AffiliateName = 'debuggers';
        return source;
      },
      says: /^UXData\.Affiliates\.1\.AffiliateName: "debuggers" is listed twice \(also UXData\.Affiliates\.0\)/,
    },
    {
      name: 'user names as one text',
      source: () => {
        const source = fixture();
        source.UXData.Affiliates[0]!.UserNames = 'devuser1';
        return source;
      },
      says: /^UXData\.Affiliates\.0\.UserNames: .*expected array/,
    },
    {
      name: 'no LambdaConfig',
      source: () => ({ ...fixture(), Lambda: { CodeUri: '../../protocols' } }),
      says: /^Lambda\.LambdaConfig: .*expected object/,
    },
    { name: 'no PipelineName', source: () => ({ ...fixture(), PipelineName: undefined }), says: /^PipelineName: .*expected string/ },
    { name: 'not an object', source: () => ['PipelineName'], says: /^\(root\): .*expected object/ },
  ])('$name', ({ source, says }) => {
    const found = problems(source());
    expect(found.length).toBeGreaterThan(0);
    expect(found[0]).toMatch(says);
  });

  it('reports every problem at once', () => {
    const source = withLambda('AMI', 'your ami here');
    source.PipelineName = 'Not A Bucket';
    source.Lambda.LambdaConfig.INSTANCE_TYPE = 'your instance type here.';
    expect(problems(source).map((p) => p.split(':')[0])).toEqual([
      'PipelineName',
      'Lambda.LambdaConfig.AMI',
      'Lambda.LambdaConfig.INSTANCE_TYPE',
    ]);
  });
});
