import { z } from 'zod';
import { Blueprint } from './blueprint.ts';
import { FOLDER_NAME } from './bucket-contract.ts';

/**
 * A NeuroCAAS blueprint (`ncap_blueprints/<name>/stack_config_template.json`) and its translation
 * into a caas blueprint (`models/blueprint.ts`). NeuroCAAS hands every `LambdaConfig` setting to its
 * job manager Lambda as an environment variable, so its blueprints write numbers and flags both as
 * JSON values and as text ("DEPLOY_LIMIT": 100, "MAXCOST": "300"): the model takes either. It is
 * loose where NeuroCAAS is: fields it does not know are kept, and the translation names each one.
 */

/** A number, or text holding one, as NeuroCAAS writes its settings. */
const Numeric = z
  .union([z.number(), z.string()], { error: 'expected a number, or text holding one (NeuroCAAS writes "300" for 300)' })
  .transform((value, ctx) => {
    const number = typeof value === 'number' ? value : value.trim() === '' ? Number.NaN : Number(value);
    if (Number.isFinite(number)) return number;
    ctx.addIssue({
      code: 'custom',
      message: `expected a number, or text holding one (NeuroCAAS writes "300" for 300), not ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  });
/** true or "true": NeuroCAAS's Lambda compares the text of the environment variable. */
const Flag = z.union([z.boolean(), z.string()]);

export const NeuroCaasAffiliate = z.looseObject({
  AffiliateName: z.string().min(1).describe('the user group: its folder in the bucket ({group}/inputs/, ...)'),
  UserNames: z.array(z.string()).optional().describe('the IAM users of the group'),
  UserInput: Flag.optional(),
  ContactEmail: z.string().optional(),
  PipelinePath: z.string().optional(),
  PipelineDir: z.string().optional(),
});
export type NeuroCaasAffiliate = z.infer<typeof NeuroCaasAffiliate>;

export const NeuroCaasLambdaConfig = z.looseObject({
  AMI: z.string().optional(),
  INSTANCE_TYPE: z.string().optional(),
  REGION: z.string().optional(),
  SECURITY_GROUPS: z.string().optional(),
  IAM_ROLE: z.string().optional(),
  KEY_NAME: z.string().optional(),
  WORKING_DIRECTORY: z.string().optional(),
  COMMAND: z.string().optional(),
  SHUTDOWN_BEHAVIOR: z.string().optional(),
  CONFIG: z.string().optional(),
  MISSING_CONFIG_ERROR: z.string().optional(),
  EXECUTION_TIMEOUT: Numeric.optional().describe("seconds: the timeout of NeuroCAAS's job manager Lambda"),
  SSM_TIMEOUT: Numeric.optional().describe('seconds: the timeout of the command run on the instance'),
  LAUNCH: Flag.optional(),
  LOGFILE: z.string().optional(),
  DEPLOY_LIMIT: Numeric.optional(),
  MAXCOST: Numeric.optional().describe("US dollars: a group's spending cap"),
  MONITOR: Flag.optional(),
  LOGDIR: z.string().optional(),
  OUTDIR: z.string().optional(),
  INDIR: z.string().optional(),
  CONFIGDIR: z.string().optional(),
  SUBMITDIR: z.string().optional(),
});
export type NeuroCaasLambdaConfig = z.infer<typeof NeuroCaasLambdaConfig>;

export const NeuroCaasBlueprint = z.looseObject({
  PipelineName: z.string().describe('the pipeline, and the name of its bucket'),
  REGION: z.string().optional(),
  STAGE: z.string().optional(),
  Lambda: z.looseObject({
    CodeUri: z.string().optional(),
    Handler: z.string().optional(),
    Launch: Flag.optional(),
    PostCodeUri: z.string().optional(),
    PostHandler: z.string().optional(),
    LambdaConfig: NeuroCaasLambdaConfig,
  }),
  UXData: z.looseObject({ Affiliates: z.array(NeuroCaasAffiliate).default([]) }).optional(),
});
export type NeuroCaasBlueprint = z.infer<typeof NeuroCaasBlueprint>;

/** What the translation says about one NeuroCAAS field: the caas field it became, or why it has no meaning here. */
export interface ImportNote {
  /** The NeuroCAAS field's path, e.g. `Lambda.LambdaConfig.COMMAND`. */
  field: string;
  /** The caas blueprint field it became, when it became one. */
  to?: string;
  note: string;
}

export type BlueprintImport = { ok: true; blueprint: Record<string, unknown>; notes: ImportNote[] } | { ok: false; problems: string[] };

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const AMI_ID = /^ami-[0-9a-f]+$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
const SECURITY_GROUP_ID = /^sg-[0-9a-f]+$/;
const LAMBDA = 'Lambda.LambdaConfig';

/** Fields with no meaning in caas, and why: the same for every blueprint. */
const NO_MEANING: Record<string, string> = {
  STAGE:
    "NeuroCAAS's development stage (which of its CloudFormation stacks to build); caas builds no stack: the bucket, the image and the role are made once (docs/aws.md)",
  'Lambda.CodeUri': "the code of NeuroCAAS's job manager Lambda; caas's job manager is `caas watch` (or its S3 event handler)",
  'Lambda.Handler': "the entry point of NeuroCAAS's job manager Lambda; caas's job manager is `caas watch` (or its S3 event handler)",
  'Lambda.Launch': 'whether NeuroCAAS deploys its job manager; `caas watch` runs where you start it',
  'Lambda.PostCodeUri': "NeuroCAAS's postprocessing Lambda; caas has none: an analysis writes its outputs itself",
  'Lambda.PostHandler': "NeuroCAAS's postprocessing Lambda; caas has none: an analysis writes its outputs itself",
  [`${LAMBDA}.COMMAND`]:
    "the shell line that starts run_main.sh on the instance; caas's agent plays run_main.sh's role, and the analysis declares its own command (`command` in its index.ts)",
  [`${LAMBDA}.WORKING_DIRECTORY`]: "where COMMAND runs; caas's agent runs each job in a fresh folder of its own",
  [`${LAMBDA}.SHUTDOWN_BEHAVIOR`]: 'caas always launches with InstanceInitiatedShutdownBehavior terminate',
  [`${LAMBDA}.CONFIG`]: "NeuroCAAS's default config name; in caas each submit file names its config (configname), JSON or YAML",
  [`${LAMBDA}.MISSING_CONFIG_ERROR`]: "caas's own message names the missing config and where to upload it",
  [`${LAMBDA}.EXECUTION_TIMEOUT`]:
    "the timeout of NeuroCAAS's job manager Lambda in seconds (AWS Lambda's Timeout, at most 900), not the analysis' run time; caas's watcher has no such limit, and the analysis' limit comes from SSM_TIMEOUT",
  [`${LAMBDA}.LAUNCH`]: "NeuroCAAS's switch to test its Lambda without launching; `caas run` is a dry run unless --execute",
  [`${LAMBDA}.LOGFILE`]: "the job manager's log file; caas's is logs/certificate.txt in each job folder",
  [`${LAMBDA}.MONITOR`]:
    "NeuroCAAS's CloudWatch monitoring of instances; caas's runner follows each instance itself, and `caas reap` finds strays",
  [`${LAMBDA}.KEY_NAME`]: "the SSH key pair of NeuroCAAS's instances; caas starts instances without one",
  UserInput: "NeuroCAAS's website setting for whether the group uploads its own data; caas has no website",
  ContactEmail: 'NeuroCAAS emailed job status there; caas sends no mail: clients follow the job folder (`caas logs --follow`)',
  PipelinePath: 'a NeuroCAAS website setting; caas has no website',
  PipelineDir: 'a NeuroCAAS website setting; caas has no website',
};
/** NeuroCAAS's folder names of the bucket layout: fixed in caas by the bucket contract. */
const LAYOUT_FOLDERS: Record<string, string> = {
  LOGDIR: 'logs',
  OUTDIR: 'results',
  INDIR: 'inputs',
  CONFIGDIR: 'configs',
  SUBMITDIR: 'submissions',
};

/**
 * A NeuroCAAS blueprint as a caas blueprint, and a note on each field it holds: the caas field it
 * became, or why it has no meaning here. The blueprint holds only what came from NeuroCAAS (caas's
 * defaults fill the rest) and passes `Blueprint`; anything that cannot become a valid field is a
 * problem named by its NeuroCAAS path, and nothing is returned then.
 */
export function importNeuroCaasBlueprint(input: unknown): BlueprintImport {
  const parsed = NeuroCaasBlueprint.safeParse(input);
  if (!parsed.success) return { ok: false, problems: parsed.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`) };
  const source = parsed.data;
  const translation = new Translation();
  translation.pipeline(source);
  translation.instances(source.Lambda.LambdaConfig);
  translation.limits(source.Lambda.LambdaConfig, source.UXData?.Affiliates ?? []);
  translation.unmapped(source);
  return translation.result();
}

/** The blueprint as it is built, its notes, and the problems found on the way. */
class Translation {
  private readonly blueprint: Record<string, unknown> = {};
  private readonly notes: ImportNote[] = [];
  private readonly problems: string[] = [];
  /** The NeuroCAAS field each caas field came from, to name it if the result fails `Blueprint`. */
  private readonly origin = new Map<string, string>();

  private map(field: string, to: string, value: unknown, note: string): void {
    this.blueprint[to] = value;
    this.origin.set(to, field);
    this.notes.push({ field, to, note });
  }

  private ignore(field: string, note: string): void {
    this.notes.push({ field, note: `no meaning in caas: ${note}` });
  }

  private problem(field: string, message: string): void {
    this.problems.push(`${field}: ${message}`);
  }

  pipeline(source: NeuroCaasBlueprint): void {
    const name = source.PipelineName;
    if (BUCKET_NAME.test(name) && !name.includes('..')) {
      this.map('PipelineName', 'bucket', name, 'NeuroCAAS names the bucket after the pipeline');
    } else {
      this.problem(
        'PipelineName',
        `${JSON.stringify(name)} cannot name the analysis bucket (NeuroCAAS names the bucket after the pipeline): expected an S3 bucket name, 3 to 63 lowercase letters, digits, "." or "-", starting and ending with a letter or digit`,
      );
    }
    const lambdaRegion = source.Lambda.LambdaConfig.REGION;
    const region = source.REGION ?? lambdaRegion;
    const regionField = source.REGION !== undefined ? 'REGION' : `${LAMBDA}.REGION`;
    if (region === undefined) {
      this.notes.push({ field: 'REGION', note: 'not given: caas uses its default region, us-east-1' });
    } else if (REGION.test(region)) {
      this.map(regionField, 'region', region, 'the EC2 and S3 region');
    } else {
      this.problem(regionField, `${JSON.stringify(region)} is not an AWS region: expected a region code such as us-east-1`);
    }
    if (source.REGION !== undefined && lambdaRegion !== undefined) {
      this.ignore(
        `${LAMBDA}.REGION`,
        lambdaRegion === source.REGION
          ? 'the same as REGION, which caas uses'
          : `it differs from REGION (${JSON.stringify(source.REGION)}), which caas uses for both EC2 and S3`,
      );
    }
    if (source.STAGE !== undefined) this.ignore('STAGE', NO_MEANING.STAGE!);
    for (const key of ['CodeUri', 'Handler', 'Launch', 'PostCodeUri', 'PostHandler'] as const) {
      if (source.Lambda[key] !== undefined) this.ignore(`Lambda.${key}`, NO_MEANING[`Lambda.${key}`]!);
    }
  }

  instances(config: NeuroCaasLambdaConfig): void {
    if (config.AMI === undefined) {
      this.notes.push({ field: `${LAMBDA}.AMI`, note: 'not given: `--compute ec2` needs an ami in the blueprint' });
    } else if (AMI_ID.test(config.AMI)) {
      this.map(
        `${LAMBDA}.AMI`,
        'ami',
        config.AMI,
        'the image must hold caas at /opt/caas and the analysis (docs/aws.md#the-ami): rebuild a NeuroCAAS image before its first caas job',
      );
    } else {
      this.problem(`${LAMBDA}.AMI`, `${JSON.stringify(config.AMI)} is not an AMI id: expected an id like ami-0123456789abcdef0`);
    }
    if (config.INSTANCE_TYPE === undefined) {
      this.notes.push({ field: `${LAMBDA}.INSTANCE_TYPE`, note: "not given: a job gets caas's default instance type, t3.micro" });
    } else if (INSTANCE_TYPE.test(config.INSTANCE_TYPE)) {
      this.map(`${LAMBDA}.INSTANCE_TYPE`, 'instance_type', config.INSTANCE_TYPE, 'the instance type a job gets unless it asks for another');
    } else {
      this.problem(
        `${LAMBDA}.INSTANCE_TYPE`,
        `${JSON.stringify(config.INSTANCE_TYPE)} is not an EC2 instance type: expected one such as p3.2xlarge`,
      );
    }
    if (config.IAM_ROLE !== undefined) {
      this.map(
        `${LAMBDA}.IAM_ROLE`,
        'iam_instance_profile',
        config.IAM_ROLE,
        "the instance profile, by name as NeuroCAAS gives it; caas's agent needs the rights of docs/iam/instance-policy.json on the bucket",
      );
    }
    if (config.SECURITY_GROUPS !== undefined) {
      if (SECURITY_GROUP_ID.test(config.SECURITY_GROUPS)) {
        this.map(`${LAMBDA}.SECURITY_GROUPS`, 'security_group_ids', [config.SECURITY_GROUPS], 'the security group of the instances');
      } else {
        this.ignore(
          `${LAMBDA}.SECURITY_GROUPS`,
          `a security group name (NeuroCAAS launches with SecurityGroups, which only names groups of the default VPC); caas launches with SecurityGroupIds: put the group's id (aws ec2 describe-security-groups --group-names ${config.SECURITY_GROUPS}) in security_group_ids`,
        );
      }
    }
    for (const key of [
      'COMMAND',
      'WORKING_DIRECTORY',
      'SHUTDOWN_BEHAVIOR',
      'KEY_NAME',
      'CONFIG',
      'MISSING_CONFIG_ERROR',
      'LAUNCH',
      'LOGFILE',
      'MONITOR',
    ] as const) {
      if (config[key] !== undefined) this.ignore(`${LAMBDA}.${key}`, NO_MEANING[`${LAMBDA}.${key}`]!);
    }
    for (const [key, folder] of Object.entries(LAYOUT_FOLDERS)) {
      const value = config[key];
      if (value === undefined) continue;
      const differs = value === folder ? '' : ` (this blueprint says ${JSON.stringify(value)}: move what is there)`;
      this.ignore(
        `${LAMBDA}.${key}`,
        `a folder of NeuroCAAS's bucket layout; caas's is fixed by the bucket contract: ${folder}/${differs}`,
      );
    }
  }

  limits(config: NeuroCaasLambdaConfig, affiliates: NeuroCaasAffiliate[]): void {
    const runtime = config.SSM_TIMEOUT;
    if (runtime !== undefined) {
      if (runtime > 0) {
        const minutes = Math.ceil(runtime / 60);
        const rounded = minutes * 60 === runtime ? '' : ', rounded up to whole minutes';
        this.map(
          `${LAMBDA}.SSM_TIMEOUT`,
          'max_runtime_minutes',
          minutes,
          `the analysis' run time limit: ${runtime} s is ${minutes} minutes${rounded} (NeuroCAAS stopped the command on the instance after it)`,
        );
      } else {
        this.problem(`${LAMBDA}.SSM_TIMEOUT`, `${runtime} seconds: expected a run time limit above 0 seconds`);
      }
    } else {
      this.notes.push({ field: `${LAMBDA}.SSM_TIMEOUT`, note: "not given: the analysis' run time limit is caas's default, 60 minutes" });
    }
    if (config.EXECUTION_TIMEOUT !== undefined) this.ignore(`${LAMBDA}.EXECUTION_TIMEOUT`, NO_MEANING[`${LAMBDA}.EXECUTION_TIMEOUT`]!);
    const deployLimit = config.DEPLOY_LIMIT;
    if (deployLimit !== undefined) {
      if (Number.isInteger(deployLimit) && deployLimit > 0) {
        this.map(
          `${LAMBDA}.DEPLOY_LIMIT`,
          'deploy_limit',
          deployLimit,
          "NeuroCAAS counted every running instance of the instance type in the account; caas counts the analysis' own pending and running instances",
        );
      } else {
        this.problem(`${LAMBDA}.DEPLOY_LIMIT`, `${deployLimit}: expected a whole number of instances, 1 or more`);
      }
    }
    this.groups(config, affiliates);
  }

  /** UXData.Affiliates become groups; MAXCOST becomes each group's budget, over all time, as NeuroCAAS counts it. */
  private groups(config: NeuroCaasLambdaConfig, affiliates: NeuroCaasAffiliate[]): void {
    const maxcost = config.MAXCOST;
    if (maxcost !== undefined && !(maxcost >= 0)) {
      this.problem(`${LAMBDA}.MAXCOST`, `${maxcost}: expected a spending cap of 0 US dollars or more`);
    }
    const budget = maxcost !== undefined && maxcost >= 0 ? { usd: maxcost, period: 'total' } : undefined;
    const seen = new Map<string, number>();
    const groups = affiliates.map((affiliate, i) => {
      const at = `UXData.Affiliates.${i}`;
      const name = affiliate.AffiliateName;
      if (!FOLDER_NAME.test(name)) {
        this.problem(
          `${at}.AffiliateName`,
          `${JSON.stringify(name)} cannot name a group folder: expected letters, digits, ".", "_" or "-", starting with a letter or digit`,
        );
      }
      const earlier = seen.get(name);
      if (earlier !== undefined)
        this.problem(`${at}.AffiliateName`, `${JSON.stringify(name)} is listed twice (also UXData.Affiliates.${earlier})`);
      seen.set(name, i);
      this.notes.push({ field: `${at}.AffiliateName`, to: `groups.${i}.name`, note: 'the group: its folder in the bucket' });
      if (affiliate.UserNames !== undefined) {
        this.notes.push({ field: `${at}.UserNames`, to: `groups.${i}.users`, note: 'who may submit in the group' });
      }
      for (const key of ['UserInput', 'ContactEmail', 'PipelinePath', 'PipelineDir'] as const) {
        if (affiliate[key] !== undefined) this.ignore(`${at}.${key}`, NO_MEANING[key]!);
      }
      this.unknownKeys(affiliate, NeuroCaasAffiliate, at);
      return { name, ...(affiliate.UserNames === undefined ? {} : { users: affiliate.UserNames }), ...(budget ? { budget } : {}) };
    });
    if (groups.length > 0) {
      this.blueprint.groups = groups;
      this.origin.set('groups', 'UXData.Affiliates');
    } else {
      this.notes.push({ field: 'UXData.Affiliates', note: 'no affiliates: the blueprint gets caas\'s default group, "caas"' });
    }
    if (maxcost === undefined) return;
    this.notes.push({
      field: `${LAMBDA}.MAXCOST`,
      ...(groups.length > 0 ? { to: 'groups[].budget' } : {}),
      note:
        groups.length > 0
          ? `each group's spending cap, {"usd": ${maxcost}, "period": "total"}: NeuroCAAS counts a group's cost over all time (its per-group override in SSM, /neurocaas/budgets/{group}/{analysis}, is not read); list the USD per hour of each instance type in prices, or the caps count nothing`
          : 'no affiliates, so no group to cap',
    });
  }

  /** Fields NeuroCAAS blueprints do not have, or caas does not know: named, never silently dropped. */
  unmapped(source: NeuroCaasBlueprint): void {
    this.unknownKeys(source, NeuroCaasBlueprint, '');
    this.unknownKeys(source.Lambda, NeuroCaasBlueprint.shape.Lambda, 'Lambda');
    this.unknownKeys(source.Lambda.LambdaConfig, NeuroCaasLambdaConfig, LAMBDA);
    if (source.UXData) this.unknownKeys(source.UXData, NeuroCaasBlueprint.shape.UXData.unwrap(), 'UXData');
  }

  private unknownKeys(value: Record<string, unknown>, model: { shape: Record<string, unknown> }, at: string): void {
    for (const key of Object.keys(value)) {
      if (!(key in model.shape)) this.ignore(at ? `${at}.${key}` : key, 'not a NeuroCAAS blueprint field caas knows of: left out');
    }
  }

  result(): BlueprintImport {
    if (this.problems.length > 0) return { ok: false, problems: this.problems };
    const checked = Blueprint.safeParse(this.blueprint);
    if (!checked.success) {
      // Each field was checked on the way; this names the NeuroCAAS field should the caas model ask for more.
      return {
        ok: false,
        problems: checked.error.issues.map((issue) => {
          const [head, ...rest] = issue.path.map(String);
          const field = this.origin.get(head ?? '') ?? head ?? '(root)';
          return `${[field, ...rest].join('.')}: ${issue.message}`;
        }),
      };
    }
    return { ok: true, blueprint: this.blueprint, notes: this.notes };
  }
}

function pathOf(path: PropertyKey[]): string {
  return path.map(String).join('.') || '(root)';
}
