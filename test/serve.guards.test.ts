import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing, tokenHash } from '../server/tokens.ts';
import { call, mockWaitJob, serviceSettings, until } from './support/service.ts';
import { AnalysisRepo, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/** A request with exactly these headers (fetch would not let a test set Host). */
function raw(
  url: string,
  options: { method?: string; route: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: { error?: string } & Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${options.route}`, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * What a browser can be made to send to the service from another site, and what the service answers
 * a client that sends something other than a JSON object, against real listening servers.
 */
describe('caas serve: requests from elsewhere and bodies that are not JSON objects', () => {
  let base: string;
  let data: string;
  let open: RunningService;
  let guarded: RunningService;
  const token = 'caas_guards-token-of-group-caas';
  const job = (asset: string) => mockWaitJob(data, asset);

  beforeAll(async () => {
    base = scratchDir('serve-guards');
    const repo = new AnalysisRepo(base);
    process.env.CAAS_ANALYSES = repo.dir;
    data = sessionFile(base);
    open = await startService({ ...serviceSettings(path.join(base, 'open')), tokens: new TokenRing([]) });
    guarded = await startService({
      ...serviceSettings(path.join(base, 'guarded')),
      tokens: new TokenRing([{ name: 'caas-lab', group: 'caas', sha256: tokenHash(token), created: '' }]),
    });
  });
  afterAll(async () => {
    await open?.stop(0);
    await guarded?.stop(0);
    delete process.env.CAAS_ANALYSES;
    removeDir(base);
  });

  it("a page elsewhere cannot queue a job with a no-cors text/plain POST (415), nor with JSON from its own Origin (403); the server's own origin can", async () => {
    const body = JSON.stringify(job('csrf'));
    const own = new URL(open.url).host;
    const plain = await raw(open.url, {
      method: 'POST',
      route: '/api/jobs?execute=true',
      headers: { 'content-type': 'text/plain;charset=UTF-8', origin: 'https://evil.example' },
      body,
    });
    expect(plain.status).toBe(403);
    const noOrigin = await raw(open.url, {
      method: 'POST',
      route: '/api/jobs?execute=true',
      headers: { 'content-type': 'text/plain' },
      body,
    });
    expect(noOrigin.status).toBe(415);
    expect(noOrigin.body.error).toMatch(/Content-Type "text\/plain": send the body as JSON with Content-Type: application\/json/);
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '']) {
      const refused = await raw(open.url, { method: 'POST', route: '/api/dispatch', headers: type ? { 'content-type': type } : {}, body });
      expect(refused.status, type).toBe(415);
    }
    const crossSite = await raw(open.url, {
      method: 'POST',
      route: '/api/jobs?execute=true',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body,
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.error).toMatch(/Origin "https:\/\/evil\.example" is not this server/);
    expect(
      (await raw(open.url, { method: 'POST', route: '/api/jobs', headers: { 'content-type': 'application/json', origin: 'null' }, body }))
        .status,
    ).toBe(403);
    const cancel = await raw(open.url, {
      method: 'DELETE',
      route: `/api/jobs/${'a'.repeat(64)}`,
      headers: { origin: 'http://evil.example' },
    });
    expect(cancel.status).toBe(403);
    // Nothing of the above reached the queue.
    expect((await call(open.url, 'GET', '/api/jobs')).body.jobs).toEqual([]);

    const mine = await raw(open.url, {
      method: 'POST',
      route: '/api/jobs',
      headers: { 'content-type': 'application/json; charset=utf-8', origin: `http://${own}` },
      body,
    });
    expect(mine.status).toBe(200);
    expect(
      (await raw(open.url, { method: 'DELETE', route: `/api/jobs/${'a'.repeat(64)}`, headers: { origin: `http://${own}` } })).status,
    ).toBe(404);
  });

  it('with no tokens, a request addressed to any name but a loopback one with its port is 421 (DNS rebinding); with tokens the name is free, the Origin rule still holds', async () => {
    const port = new URL(open.url).port;
    for (const host of [`evil.example:${port}`, `127.0.0.1.evil.example:${port}`, '127.0.0.1:1', '127.0.0.1', `10.0.0.1:${port}`]) {
      const answer = await raw(open.url, { route: '/api/analyses', headers: { host } });
      expect(answer.status, host).toBe(421);
      expect(answer.body.error).toMatch(/has no tokens, so it answers only requests addressed to this machine/);
    }
    expect((await raw(open.url, { route: '/', headers: { host: `rebound.example:${port}` } })).status).toBe(421);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      expect((await raw(open.url, { route: '/healthz', headers: { host } })).status, host).toBe(200);
    }

    const authorization = `Bearer ${token}`;
    expect((await raw(guarded.url, { route: '/api/analyses', headers: { host: 'caas.lab.example', authorization } })).status).toBe(200);
    const proxied = await raw(guarded.url, {
      method: 'POST',
      route: '/api/jobs',
      headers: {
        host: '127.0.0.1:8080',
        'x-forwarded-host': 'caas.lab.example',
        origin: 'https://caas.lab.example',
        'content-type': 'application/json',
        authorization,
      },
      body: JSON.stringify(job('proxied')),
    });
    expect(proxied.status).toBe(200);
    const elsewhere = await raw(guarded.url, {
      method: 'POST',
      route: '/api/jobs',
      headers: { host: 'caas.lab.example', origin: 'https://evil.example', 'content-type': 'application/json', authorization },
      body: JSON.stringify(job('proxied')),
    });
    expect(elsewhere.status).toBe(403);
  });

  it('malformed JSON and bodies that are not job inputs are 400 in the error shape on every POST route, never 5xx', async () => {
    for (const route of ['/api/jobs', '/api/jobs?execute=true', '/api/dispatch']) {
      for (const text of ['{"analysis":', 'not json', '']) {
        const answer = await call(open.url, 'POST', route, { raw: text });
        expect(answer.status, `${route} ${JSON.stringify(text)}`).toBe(400);
        expect(answer.body.error, `${route} ${JSON.stringify(text)}`).toMatch(/^body: /);
      }
      for (const text of ['42', '"a job"', 'null', 'true', '[1, "x"]', '[]']) {
        const answer = await call(open.url, 'POST', route, { raw: text });
        expect(answer.status, `${route} ${text}`).toBe(400);
        expect(answer.body, `${route} ${text}`).toEqual(
          expect.objectContaining(answer.body.jobs ? { jobs: expect.any(Array) } : { error: expect.any(String) }),
        );
        for (const one of answer.body.jobs ?? [])
          expect(one).toMatchObject({ action: 'INVALID', queued: false, issues: [expect.anything()] });
      }
    }
    expect((await call(open.url, 'GET', '/api/jobs')).body.jobs).toEqual([]);
  });

  it("POST /api/jobs refuses jobs past the group's queue limit (25 per slot) as REFUSED, 429 when nothing was queued", async () => {
    const home = path.join(base, 'limit');
    const gate = path.join(base, 'limit-gate');
    process.env.CAAS_MOCK_GATE_FILE = gate;
    const server = await startService({ ...serviceSettings(home), tokens: new TokenRing([]) });
    try {
      // mock-wait's deploy_limit is 4: 100 jobs of group caas may wait (the one held at the gate counts).
      const flood = await call(server.url, 'POST', '/api/jobs?execute=true', {
        body: Array.from({ length: 101 }, (_, i) => job(`flood-${i}`)),
      });
      expect(flood.status).toBe(202);
      expect(flood.body.counts).toMatchObject({ RUN: 100, REFUSED: 1 });
      expect(flood.body.jobs[100]).toMatchObject({
        action: 'REFUSED',
        queued: false,
        reason: expect.stringMatching(
          /group "caas" of mock-wait has 100 jobs in the queue, as many as its limits allow \(4 at once × 25\)/,
        ),
      });
      const more = await call(server.url, 'POST', '/api/jobs?execute=true', { body: job('one-more') });
      expect(more.status).toBe(429);
      expect(more.body.jobs[0]).toMatchObject({ action: 'REFUSED', queued: false });
      // A job of another group has its own limit.
      const other = await call(server.url, 'POST', '/api/jobs?execute=true', { body: { ...job('one-more'), group: 'demo' } });
      expect(other.status).toBe(202);
    } finally {
      writeFileSync(gate, '');
      delete process.env.CAAS_MOCK_GATE_FILE;
      await server.stop(0);
    }
  });

  it('while it shuts down, a request on a connection already open is answered 503 with why', async () => {
    const home = path.join(base, 'drain');
    const gate = path.join(base, 'drain-gate');
    process.env.CAAS_MOCK_GATE_FILE = gate;
    const server = await startService({ ...serviceSettings(home), tokens: new TokenRing([]) });
    let stopped: Promise<unknown> | undefined;
    try {
      const { identity } = (await call(server.url, 'POST', '/api/jobs?execute=true', { body: job('held') })).body.jobs[0];
      await until('the job to run', async () => (await call(server.url, 'GET', `/api/jobs/${identity}`)).body.record?.status === 'running');
      // A request under way when the stop begins: its first bytes are in, so its connection is not idle.
      const { host, port } = new URL(server.url);
      const socket = connect(Number(port), new URL(server.url).hostname);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(`GET /api/analyses HTTP/1.1\r\nHost: ${host}\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // The running job holds the stop for its grace, long enough to finish the request.
      stopped = server.stop(20_000);
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        answer += chunk;
      });
      socket.write('Connection: close\r\n\r\n');
      await new Promise((resolve) => socket.once('close', resolve));
      expect(answer).toMatch(/^HTTP\/1\.1 503 /);
      expect(answer).toContain('the service is shutting down: try again in a moment');
    } finally {
      writeFileSync(gate, '');
      delete process.env.CAAS_MOCK_GATE_FILE;
      await (stopped ?? server.stop(0));
    }
  });
});
