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

export interface AnalysisEnvRequest {
  /** The agent's own environment, which holds caas's settings too: only named parts of it pass. */
  from: NodeJS.ProcessEnv;
  /** The NeuroCAAS and CAAS_* variables of this job. */
  job: Record<string, string>;
  /** The job's own temporary folder (TMPDIR), removed with the job. */
  tmpDir: string;
  /**
   * What the stores the job reads and writes give a program that reaches them with its own tools
   * (ObjectStore.environment: an S3 store's credentials and endpoint, say), so the aws CLI (say) in
   * the analysis reaches the same store caas uses.
   */
  stores: Record<string, string>;
  blueprint: AnalysisEnvironment;
}

/**
 * The analysis' whole environment, built from a list rather than inherited: PATH, HOME, locale and
 * time zone; the host's certificates and proxies; what the job's stores need (their credentials and
 * endpoints); what the blueprint sets or passes; and the job's variables last, so nothing
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
  for (const [name, value] of Object.entries(request.stores)) if (!CAAS_SETTINGS.test(name)) env[name] = value;
  for (const name of request.blueprint.pass) pass(name);
  for (const [name, value] of Object.entries(request.blueprint.set)) if (!CAAS_SETTINGS.test(name)) env[name] = value;
  env.TMPDIR = request.tmpDir;
  return { ...env, ...request.job };
}
