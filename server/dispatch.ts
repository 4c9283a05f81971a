import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { analysisRoots, listAnalysisNames } from '../analyses/index.ts';
import { runDispatch } from '../dispatcher/dispatch.ts';
import { CaasError } from '../models/caas-error.ts';
import type { DispatchBody, JobsAnswer } from '../models/service-api.ts';
import { describeParamsIssues, dispatchParamsIssues } from './dispatch-params.ts';
import { HttpError, type Service } from './service.ts';
import type { Principal } from './tokens.ts';

/** At most this many jobs come out of one dispatch request (max_jobs may ask for fewer). */
const MAX_DISPATCHED = 10_000;

/**
 * POST /api/dispatch: the same dispatcher as `caas dispatch` (its sources, expansion and parameter
 * checks), writing job inputs to memory instead of a file; then the same planning and queueing as
 * POST /api/jobs. Only the catalog in the service's DB and prefixes in its store are read: a
 * request cannot name a file or another store on the server's machine.
 */
export async function dispatchJobs(
  service: Service,
  body: DispatchBody,
  principal: Principal,
): Promise<{
  status: number;
  body: JobsAnswer & { dispatched: { assets: number; jobs: number; max_jobs_reached: boolean; notices: Record<string, number> } };
}> {
  const sources = [body.query, body.assets, body.prefix].filter((s) => s !== undefined).length;
  if (sources !== 1) throw new HttpError(400, 'give exactly one of query, assets or prefix');
  if (!listAnalysisNames(analysisRoots()).includes(body.analysis))
    throw new HttpError(404, `analysis "${body.analysis}": no such analysis`);
  if (body.prefix !== undefined && !body.prefix.startsWith(`${service.store.scheme}://`)) {
    throw new HttpError(400, `prefix: must be in the service's store (${service.store.scheme}://bucket/...)`);
  }
  if (principal.group !== null && body.group !== undefined && body.group !== principal.group) {
    throw new HttpError(400, `group: this token submits into group "${principal.group}" only`, [
      { path: ['group'], message: `this token submits into group "${principal.group}" only` },
    ]);
  }
  const paramsIssues = await dispatchParamsIssues(body);
  if (paramsIssues.length > 0) throw new HttpError(400, describeParamsIssues(paramsIssues), paramsIssues);
  const folder = await mkdtemp(path.join(tmpdir(), 'caas-serve-dispatch-'));
  try {
    let assetsCsv: string | undefined;
    if (body.assets) {
      assetsCsv = path.join(folder, 'assets.csv');
      await writeFile(assetsCsv, `asset_id\n${body.assets.map((id) => `"${id.replaceAll('"', '""')}"`).join('\n')}\n`);
    }
    let params: string | undefined;
    if (body.params !== undefined) {
      params = path.join(folder, 'params.json');
      // The body's params are analysis_parameters.json: one set for all jobs, or a list of sets (a grid).
      const file = Array.isArray(body.params) ? { distributed_parameters: body.params } : { fixed_parameters: body.params };
      await writeFile(params, JSON.stringify(file));
    }
    let text = '';
    const sink = new Writable({
      write(chunk, _encoding, done) {
        text += chunk;
        done();
      },
    });
    const summary = await runDispatch(
      {
        home: service.settings.home,
        dbUrl: service.settings.dbUrl,
        storeUrl: service.settings.storeUrl,
        storeSettings: service.settings.storeSettings,
        ...(body.query ? { query: JSON.stringify(body.query) } : {}),
        ...(assetsCsv ? { assetsCsv } : {}),
        ...(body.prefix ? { s3Prefix: body.prefix } : {}),
        analysis: body.analysis,
        fileExt: body.file_ext,
        splitFiles: body.split,
        groupBy: body.group_by,
        params,
        maxJobs: Math.min(body.max_jobs ?? MAX_DISPATCHED, MAX_DISPATCHED),
        group: principal.group ?? body.group,
        output: '-',
        stdout: sink,
      },
      { warn: () => {} },
    ).catch((error: unknown) => {
      // The temporary files are the body's fields to the caller: name those, never this machine's paths.
      if (error instanceof CaasError) {
        const message = error.message
          .replaceAll(path.join(folder, 'params.json'), 'params')
          .replaceAll(path.join(folder, 'assets.csv'), 'assets');
        throw new HttpError(400, message);
      }
      throw error;
    });
    const values = text
      .split('\n')
      .filter(Boolean)
      .map((line, i) => ({ where: `job ${i + 1}`, value: JSON.parse(line) as unknown }));
    const dispatched = { assets: summary.assets, jobs: summary.jobs, max_jobs_reached: summary.maxJobsReached, notices: summary.notices };
    if (values.length === 0) {
      return {
        status: 200,
        body: { execute: body.execute, counts: { RUN: 0, SKIP: 0, RUNNING: 0, INVALID: 0, REFUSED: 0 }, jobs: [], dispatched },
      };
    }
    const answer = await service.submit(values, principal, body.execute);
    return { status: answer.status, body: { ...answer.body, dispatched } };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}
