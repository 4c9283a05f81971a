/**
 * What a request must look like before any route sees it, so that a page on another site cannot
 * use the service through the browser of someone who can reach it (docs/serve.md#requests-from-browsers).
 * Each function answers why a request is refused, or undefined when it passes.
 */

/** Methods that change something: queue a job, cancel one. */
export const STATE_CHANGING: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Whether a --host (or the name in a Host header) is this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * A server with no tokens answers anyone who reaches it; a page elsewhere reaches 127.0.0.1 by
 * rebinding its own name to it (DNS rebinding), and its requests then carry that name as Host. So
 * such a server answers only requests addressed to a loopback name with its own port.
 */
export function loopbackHostProblem(host: string | undefined, port: number): string | undefined {
  const match = /^(\[[^\]]*\]|[^:[\]]+)(?::(\d+))?$/.exec(host ?? '');
  const name = match?.[1]?.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const given = match?.[2] === undefined ? 80 : Number(match[2]);
  if (name !== undefined && isLoopback(name) && given === port) return undefined;
  return `Host "${host ?? ''}": this server has no tokens, so it answers only requests addressed to this machine (127.0.0.1:${port}, localhost:${port} or [::1]:${port}); configure tokens (caas serve token add) to serve it under another name`;
}

/**
 * A browser says in Origin which site a request comes from. A state-changing request from another
 * site is refused: no page but the service's own may queue or cancel jobs. Compared by host and port
 * with the Host the request was sent to (or X-Forwarded-Host from a proxy, which a page cannot set
 * without asking the service first); programs that send no Origin pass.
 */
export function originProblem(origin: string | undefined, host: string | undefined, forwardedHost: string | undefined): string | undefined {
  if (origin === undefined) return undefined;
  let from: string | undefined;
  try {
    from = new URL(origin).host.toLowerCase();
  } catch {
    from = undefined;
  }
  const own = [host, forwardedHost?.split(',')[0]?.trim()].filter((h): h is string => !!h).map((h) => h.toLowerCase());
  if (from && own.includes(from)) return undefined;
  return `Origin "${origin}" is not this server (${own[0] ?? 'no Host header'}): only the service's own page may queue or cancel jobs from a browser`;
}

/**
 * A state-changing request with a body must say it is JSON. A page elsewhere can send text/plain,
 * a form or multipart to any address without asking first, never application/json: requiring it
 * makes the browser ask the service (a preflight it does not grant) before a cross-site request.
 */
export function jsonContentProblem(contentType: string | undefined): string | undefined {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (media === 'application/json') return undefined;
  return `Content-Type "${contentType ?? ''}": send the body as JSON with Content-Type: application/json`;
}
