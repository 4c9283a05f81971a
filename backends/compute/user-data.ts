import type { AgentSpec } from '../../models/agent-spec.ts';

/** EC2 refuses UserData over 16 KB before base64 encoding. */
export const USER_DATA_LIMIT = 16 * 1024;

export interface UserDataOptions {
  spec: AgentSpec;
  /** Seconds after boot at which the instance powers itself off whatever the agent is doing. */
  hardStopS: number;
  region: string;
  /** Variables exported before the agent starts, for the store's tools (LauncherOptions.storeEnvironment). */
  environment?: Record<string, string>;
  /** First comment line, so the console log says which job the instance is. */
  label: string;
}

/**
 * The instance's whole life as a bash script: arm the hard stop, write the agent spec, run the
 * same agent a local job runs, power off. User values reach the instance only inside the quoted
 * heredoc (bash expands nothing there) or as single-quoted words, so none is ever parsed as shell.
 *
 * CAAS_ROOT (default /opt/caas, where the AMI holds caas after `npm ci`), CAAS_POWEROFF_CMD
 * (default poweroff) and CAAS_IMDS_URL (the instance metadata service) exist so the script can run
 * outside an instance, as the tests do.
 */
export function userDataScript(options: UserDataOptions): string {
  const hardStopS = Math.max(1, Math.ceil(options.hardStopS));
  return `#!/bin/bash
# ${options.label.replace(/[\r\n]/g, ' ')}
# Written by caas (backends/compute/ec2.ts). The instance terminates when it powers off
# (InstanceInitiatedShutdownBehavior=terminate), so every way out of this script ends the machine.
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
poweroff_cmd="\${CAAS_POWEROFF_CMD:-poweroff}"
caas_root="\${CAAS_ROOT:-/opt/caas}"

# The hard stop does not trust the agent, node or this script to finish: a hung job must not keep
# a paid machine alive past its max runtime.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep ${hardStopS} &
  sleeper=$!
  wait "$sleeper"
  echo "caas: max runtime reached (${hardStopS} s): powering off"
  CAAS_POWEROFF_REASON=max-runtime "$poweroff_cmd"
) &
hard_stop=$!

power_off() {
  code=$?
  kill "$hard_stop" 2>/dev/null
  wait "$hard_stop" 2>/dev/null
  echo "caas: agent ended with exit code $code: powering off"
  CAAS_POWEROFF_REASON=agent-ended "$poweroff_cmd"
}
trap power_off EXIT

${agentLines(
  options,
  `# The instance id, for the agent's heartbeat (IMDSv2; a runner that adopts this job names the machine by it).
imds="\${CAAS_IMDS_URL:-http://169.254.169.254}"
imds_token="$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token" || true)"
CAAS_INSTANCE_ID="$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $imds_token" "$imds/latest/meta-data/instance-id" || true)"
export CAAS_INSTANCE_ID`,
)}
`;
}

/**
 * Writes the spec to a file and runs caas's agent from CAAS_ROOT (default /opt/caas) on it, after
 * `identify` (lines that export CAAS_INSTANCE_ID, the machine's name in the heartbeat).
 */
function agentLines(options: Omit<UserDataOptions, 'hardStopS' | 'label'>, identify: string, run = ''): string {
  const exports = [`export AWS_REGION=${shellWord(options.region)} AWS_DEFAULT_REGION=${shellWord(options.region)}`];
  for (const [name, value] of Object.entries(options.environment ?? {})) {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) exports.push(`export ${name}=${shellWord(value)}`);
  }
  // JSON.stringify writes one line (newlines inside strings are escaped), so no line of it can
  // ever equal the heredoc's terminator.
  return `spec_file="$(mktemp)"
cat >"$spec_file" <<'CAAS_SPEC'
${JSON.stringify(options.spec)}
CAAS_SPEC
${exports.join('\n')}

${identify}
cd "$(mktemp -d)" || exit 1
# --import resolves bare names from the working folder, which is a fresh one, so tsx is found
# from caas's own node_modules instead.
tsx_loader="$(cd "$caas_root" && node --input-type=module -e 'process.stdout.write(import.meta.resolve("tsx"))')" || exit 1
CAAS_AGENT_SPEC_FILE="$spec_file" ${run}node --import "$tsx_loader" "$caas_root/wrapper/agent-main.ts"`;
}

/**
 * The command of a container that runs one job (AWS Batch): caas's agent on the spec, as on an
 * instance, without the power-off (the container ends with the agent, and Batch enforces the max
 * runtime as the job's timeout). The machine is named by its Batch job id. The agent replaces bash
 * (exec), so it is the container's first process and hears TerminateJob's SIGTERM itself.
 */
export function containerScript(options: Omit<UserDataOptions, 'hardStopS'>): string {
  return `#!/bin/bash
# ${options.label.replace(/[\r\n]/g, ' ')}
# Written by caas (backends/compute/batch.ts).
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
caas_root="\${CAAS_ROOT:-/opt/caas}"
${agentLines(options, BATCH_JOB_ID, 'exec ')}
`;
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, in the container's shell
const BATCH_JOB_ID = 'export CAAS_INSTANCE_ID="${AWS_BATCH_JOB_ID:-}"';

/** One single-quoted shell word: nothing inside is expanded. */
export function shellWord(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
