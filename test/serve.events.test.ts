import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing } from '../server/tokens.ts';
import { call, serviceSettings, until } from './support/service.ts';
import { AnalysisRepo, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/** A job's event stream that breaks after it began: said in the JSON log and to the client, not on the console. */
describe('caas serve: a failing event stream', () => {
  let base: string;
  let home: string;
  let service: RunningService;
  const logged: Record<string, unknown>[] = [];
  const gate = () => path.join(base, 'gate');

  beforeAll(async () => {
    base = scratchDir('serve-events');
    home = path.join(base, 'home');
    const repo = new AnalysisRepo(base);
    process.env.CAAS_ANALYSES = repo.dir;
    process.env.CAAS_MOCK_GATE_FILE = gate();
    const _data = sessionFile(base);
    service = await startService({ ...serviceSettings(home), log: (event) => logged.push(event), tokens: new TokenRing([]) });
  });
  afterAll(async () => {
    writeFileSync(gate(), '');
    await service?.stop(0);
    delete process.env.CAAS_ANALYSES;
    delete process.env.CAAS_MOCK_GATE_FILE;
    removeDir(base);
  });

  it('an error once the stream is under way goes to the JSON log with the path, and the client gets an error event', async () => {
    const data = path.join(base, 'data', 'session.json');
    const accepted = await call(service.url, 'POST', '/api/jobs?execute=true', {
      body: {
        analysis: 'mock-wait',
        inputs: [{ asset_id: 'held', name: 'held', location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] }],
        parameters: { wait: 0 },
      },
    });
    const identity: string = accepted.body.jobs[0].identity;
    await until('the job to run', async () => (await call(service.url, 'GET', `/api/jobs/${identity}`)).body.record?.status === 'running');

    const response = await fetch(`${service.url}/api/jobs/${identity}/events`);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('event: status')) text += (await reader.read()).value ?? '';
    // The queue entry becomes unreadable under the stream: its next look throws.
    const db = new Database(path.join(home, 'metadata.sqlite'));
    db.prepare("UPDATE queue SET doc = '{' WHERE id = ?").run(identity);
    db.close();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    expect(text).toMatch(/event: error\ndata: internal error: the event stream stopped; reconnect with Last-Event-ID to resume/);
    expect(logged).toContainEqual(
      expect.objectContaining({ path: `/api/jobs/${identity}/events`, error: expect.stringMatching(/SyntaxError|JSON/) }),
    );
  });
});
