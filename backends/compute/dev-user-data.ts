import { shellWord, USER_DATA_LIMIT } from './user-data.ts';

export interface DevUserDataOptions {
  analysis: string;
  owner: string;
  /** The expiry tag at launch: what the self-stop goes by while the metadata service cannot be read. */
  expiry: string;
  /** The store and bucket `caas dev test` leaves jobs in (the store's settings in its URL). */
  storeUrl: string;
  bucket: string;
  region: string;
  /** Variables the instance's programs need to reach the store (LauncherOptions.storeEnvironment). */
  environment?: Record<string, string>;
}

const BOOT_END = 'CAAS_DEV_BOOT';

/**
 * A development instance's UserData: it installs the instance's boot script as a cloud-init
 * per-boot script, so every start of the instance (`caas dev start`, or the console) arms the
 * self-stop and the test-job loop again, then runs it for this first boot. cloud-init runs the
 * UserData only at an instance's first boot, and the per-boot scripts before it, when this one
 * did not exist yet.
 *
 * CAAS_DEV_BOOT_DIR (default cloud-init's per-boot folder) exists, with the boot script's own
 * variables, so the tests can run it outside an instance.
 */
export function devUserDataScript(options: DevUserDataOptions): string {
  const boot = devBootScript(options);
  // The boot script is caas's own text, values single-quoted inside it; none may end the heredoc early.
  if (boot.split('\n').includes(BOOT_END)) throw new Error(`the boot script holds a line "${BOOT_END}"`);
  const script = `#!/bin/bash
# caas development instance of ${oneLine(options.analysis)} for ${oneLine(options.owner)}
# Written by caas (backends/compute/dev-user-data.ts).
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
boot_dir="\${CAAS_DEV_BOOT_DIR:-/var/lib/cloud/scripts/per-boot}"
mkdir -p "$boot_dir" || exit 1
cat >"$boot_dir/caas-dev.sh" <<'${BOOT_END}'
${boot}
${BOOT_END}
chmod 755 "$boot_dir/caas-dev.sh"
exec "$boot_dir/caas-dev.sh"
`;
  const bytes = Buffer.byteLength(script);
  if (bytes > USER_DATA_LIMIT)
    throw new Error(`the development instance's UserData is ${bytes} bytes, over EC2's limit of ${USER_DATA_LIMIT}`);
  return script;
}

/**
 * The life of a development instance at every boot: detach from cloud-init (which waits for its
 * scripts), leave at once on an instance without the caas:dev tag, stop the instance at the time
 * its caas:expiry tag says (read again every CAAS_DEV_CHECK_S seconds, so `caas dev extend` moves
 * it), and run the test-job loop (wrapper/dev-jobs-main.ts) from caas at CAAS_ROOT whenever caas is
 * there. The self-stop needs only bash, curl and date: it holds on an image that has nothing else.
 *
 * CAAS_POWEROFF_CMD, CAAS_IMDS_URL, CAAS_ROOT, CAAS_DEV_STATE (its pid and log) and
 * CAAS_DEV_CHECK_S exist so the tests can run it outside an instance, with a short interval.
 */
function devBootScript(options: DevUserDataOptions): string {
  const exports = [
    `export AWS_REGION=${heredocWord(options.region)} AWS_DEFAULT_REGION=${heredocWord(options.region)}`,
    `export CAAS_DEV_STORE=${heredocWord(options.storeUrl)} CAAS_DEV_BUCKET=${heredocWord(options.bucket)}`,
  ];
  for (const [name, value] of Object.entries(options.environment ?? {})) {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) exports.push(`export ${name}=${heredocWord(value)}`);
  }
  return `#!/bin/bash
# A caas development instance of ${oneLine(options.analysis)}, at every boot (written by its UserData,
# backends/compute/dev-user-data.ts): the self-stop at the end of its lifetime, and the loop that
# runs the jobs of \`caas dev test\`. An instance without the caas:dev tag runs nothing of it.
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
state_dir="\${CAAS_DEV_STATE:-/var/lib/caas-dev}"
if [ "\${1:-}" != run ]; then
  mkdir -p "$state_dir" || exit 1
  setsid "$0" run </dev/null >>"$state_dir/log" 2>&1 &
  exit 0
fi
echo $$ >"$state_dir/pid"
poweroff_cmd="\${CAAS_POWEROFF_CMD:-poweroff}"
caas_root="\${CAAS_ROOT:-/opt/caas}"
imds="\${CAAS_IMDS_URL:-http://169.254.169.254}"
check_s="\${CAAS_DEV_CHECK_S:-30}"
launch_expiry=${heredocWord(options.expiry)}
${exports.join('\n')}

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) caas dev: $*"; }

# One value of the instance metadata service (IMDSv2). Exit code 22: it answered that there is no such value.
imds_get() {
  local token
  token="$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")" || return 1
  curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"
}

# An instance launched from an image saved here runs this script too, and has no caas:dev tag. If
# the metadata service stays silent, the instance is taken for a development one: a self-stop
# armed in doubt costs a job a retry, one left unarmed an instance that runs for ever.
for _ in $(seq 1 30); do
  analysis="$(imds_get tags/instance/caas:dev)"
  found=$?
  if [ "$found" = 0 ] || [ "$found" = 22 ]; then break; fi
  sleep 2
done
if [ "$found" = 22 ]; then
  say "no caas:dev tag: not a development instance, nothing to do"
  exit 0
fi

self_stop() {
  local expiry_s value read_s
  expiry_s="$(date -u -d "$launch_expiry" +%s)"
  while :; do
    if value="$(imds_get tags/instance/caas:expiry)" && [ -n "$value" ] && read_s="$(date -u -d "$value" +%s 2>/dev/null)"; then
      expiry_s="$read_s"
    fi
    if [ "$(date +%s)" -ge "$expiry_s" ]; then
      say "lifetime over (caas:expiry $(date -u -d "@$expiry_s" +%Y-%m-%dT%H:%M:%SZ)): powering off, the instance stops (caas dev start starts it again)"
      CAAS_POWEROFF_REASON=lifetime "$poweroff_cmd"
      return
    fi
    sleep "$check_s"
  done
}
self_stop &

for _ in $(seq 1 30); do
  CAAS_INSTANCE_ID="$(imds_get instance-id)" && break
  sleep 2
done
export CAAS_INSTANCE_ID
say "development instance $CAAS_INSTANCE_ID of \${analysis:-(tag unreadable)}: stops at its caas:expiry tag"

# While caas is not at $caas_root (a base image being set up) the loop is looked for again every minute.
missing_said=""
while :; do
  if tsx_loader="$(cd "$caas_root" 2>/dev/null && node --input-type=module -e 'process.stdout.write(import.meta.resolve("tsx"))' 2>/dev/null)"; then
    missing_said=""
    node --import "$tsx_loader" "$caas_root/wrapper/dev-jobs-main.ts"
    say "the test-job loop ended (exit code $?): starting it again in 10 s"
    sleep 10
  else
    [ -n "$missing_said" ] || say "no caas at $caas_root (node, and caas after npm ci): caas dev test cannot run jobs here until it is there"
    missing_said=1
    sleep 60
  fi
done`;
}

/** One single-quoted shell word: nothing inside is expanded. Refuses line breaks, which would break the heredoc's lines. */
function heredocWord(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new Error(`a development instance setting holds a control character: ${JSON.stringify(value)}`);
  return shellWord(value);
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]/g, ' ');
}
