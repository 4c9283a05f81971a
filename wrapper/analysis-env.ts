import type { AnalysisEnvironment } from '../models/blueprint.ts';
import { CAAS_SETTINGS } from '../models/caas-settings.ts';

/** What every program expects of a login: where programs are, the home folder, the user, locale and time zone. */
const SYSTEM = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'TZ'];
/** Certificates and proxies of the host's network, which any download inside an analysis needs. */
const NETWORK = [
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];
/**
 * What a standard AWS client (the aws CLI, boto3, the SDKs) reads to find credentials, region and
 * endpoint. On EC2 the instance role serves credentials through the metadata service instead.
 */
const AWS =
  /^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|PROFILE|DEFAULT_PROFILE|REGION|DEFAULT_REGION|CONFIG_FILE|SHARED_CREDENTIALS_FILE|CA_BUNDLE|ROLE_ARN|ROLE_SESSION_NAME|WEB_IDENTITY_TOKEN_FILE|CONTAINER_CREDENTIALS_RELATIVE_URI|CONTAINER_CREDENTIALS_FULL_URI|CONTAINER_AUTHORIZATION_TOKEN|EC2_METADATA_DISABLED|ENDPOINT_URL|ENDPOINT_URL_S3|USE_FIPS_ENDPOINT|USE_DUALSTACK_ENDPOINT)$/;

export interface AnalysisEnvRequest {
  /** The agent's own environment, which holds caas's settings too: only named parts of it pass. */
  from: NodeJS.ProcessEnv;
  /** The NeuroCAAS and CAAS_* variables of this job. */
  job: Record<string, string>;
  /** The job's own temporary folder (TMPDIR), removed with the job. */
  tmpDir: string;
  /** The job reads or writes S3: the analysis gets what an S3 client needs to reach the same store. */
  s3: boolean;
  /** The endpoint caas itself uses for S3 (--s3-endpoint), when it is not AWS's. */
  s3Endpoint?: string;
  blueprint: AnalysisEnvironment;
}

/**
 * The analysis' whole environment, built from a list rather than inherited: PATH, HOME, locale and
 * time zone; the host's certificates and proxies; AWS credentials, region and the S3 endpoint when
 * the job touches S3; what the blueprint sets or passes; and the job's variables last, so nothing
 * can shadow them. Never the runner's DB URL, store URL, workspace or any other caas setting.
 */
export function analysisEnvironment(request: AnalysisEnvRequest): Record<string, string> {
  const env: Record<string, string> = {};
  const pass = (name: string) => {
    const value = request.from[name];
    if (value !== undefined && !CAAS_SETTINGS.test(name)) env[name] = value;
  };
  for (const name of SYSTEM) pass(name);
  for (const name of Object.keys(request.from)) if (name.startsWith('LC_')) pass(name);
  for (const name of NETWORK) pass(name);
  // The local launcher keeps the host's CA bundle from an agent that needs no TLS; the analysis gets it back.
  if (env.NODE_EXTRA_CA_CERTS === undefined && request.from.CAAS_AGENT_NODE_EXTRA_CA_CERTS !== undefined) {
    env.NODE_EXTRA_CA_CERTS = request.from.CAAS_AGENT_NODE_EXTRA_CA_CERTS;
  }
  if (request.s3) {
    for (const name of Object.keys(request.from)) if (AWS.test(name)) pass(name);
    // The same store caas uses: an `aws s3 cp` inside the analysis must not go to AWS when caas talks to another server.
    if (request.s3Endpoint) env.AWS_ENDPOINT_URL_S3 = request.s3Endpoint;
  }
  for (const name of request.blueprint.pass) pass(name);
  for (const [name, value] of Object.entries(request.blueprint.set)) if (!CAAS_SETTINGS.test(name)) env[name] = value;
  env.TMPDIR = request.tmpDir;
  return { ...env, ...request.job };
}
