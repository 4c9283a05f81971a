/**
 * The dispatch benchmark: 100k catalog assets x 3 distributed parameter sets -> 300k job lines.
 * Setup (the catalog import) is untimed; the timed part is the real `caas dispatch` command in a
 * child process, so wall time includes its start-up and peak RSS is its own.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { openDatabase } from '../backends/db/index.ts';
import { aindDatetime } from '../dispatcher/sample-data.ts';
import { JobInput } from '../models/job-input.ts';
import { runCaas } from './caas-cli.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, verify } from './report.ts';

/** A data-asset document shaped like AIND's, with the nested metadata that makes real ones heavy. */
function assetDocument(i: number): Record<string, unknown> {
  const subject = String(600000 + (i % 5000));
  const ms = Date.UTC(2023, 0, 1) + (i % 700) * 86_400_000 + (i % 24) * 3_600_000;
  const day = new Date(ms).toISOString();
  const name = `ecephys_${subject}_${aindDatetime(ms)}_${String(i).padStart(6, '0')}`;
  return {
    _id: `asset-${String(i).padStart(7, '0')}`,
    name,
    location: `s3://aind-open-data/${name}`,
    subject: { subject_id: subject, sex: i % 2 ? 'Female' : 'Male', genotype: 'Pvalb-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt' },
    data_description: {
      modality: [{ abbreviation: 'ecephys', name: 'Extracellular electrophysiology' }],
      data_level: 'raw',
      project_name: 'Benchmark Ephys',
      institution: { abbreviation: 'AIND', name: 'Allen Institute for Neural Dynamics' },
      creation_time: day,
    },
    session: { rig_id: `rig-${i % 12}`, experimenter_full_name: ['Experimenter'], session_type: 'passive' },
    created: day,
  };
}

async function importCatalog(home: string, assets: number): Promise<void> {
  const db = await openDatabase('sqlite:', { home });
  try {
    await db.importAssets(
      (function* () {
        for (let i = 0; i < assets; i++) yield assetDocument(i);
      })(),
    );
  } finally {
    await db.close();
  }
}

/** Counts the lines and checks the first and last against the JobInput schema. */
async function checkOutput(file: string): Promise<number> {
  let lines = 0;
  let last = '';
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })) {
    if (lines === 0) JobInput.parse(JSON.parse(line));
    last = line;
    lines++;
  }
  if (last) JobInput.parse(JSON.parse(last));
  return lines;
}

export async function benchDispatch(options: BenchOptions): Promise<BenchReport> {
  const assets = options.quick ? 10_000 : 100_000;
  const sets = 3;
  const work = options.workDir;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const home = path.join(work, 'home');
    await importCatalog(home, assets);
    const params = path.join(work, 'analysis_parameters.json');
    await writeFile(
      params,
      JSON.stringify({
        fixed_parameters: { analysis_tag: 'bench' },
        distributed_parameters: Array.from({ length: sets }, (_, k) => ({ isi_violations_cutoff: (k + 1) / 20 })),
      }),
    );
    const output = path.join(work, 'jobs.jsonl');
    const probe = path.join(work, 'probe.json');
    const run = await runCaas(
      [
        '--home',
        home,
        'dispatch',
        '--query',
        '{"data_description.modality.abbreviation":"ecephys"}',
        '--analysis',
        'unit-filter',
        '--params',
        params,
        '--dispatched-at',
        '2025-01-31T12:00:00Z',
        '-o',
        output,
      ],
      { probe },
    );
    const { maxRssKiB, cpuUs } = JSON.parse(await readFile(probe, 'utf8')) as { maxRssKiB: number; cpuUs: number };
    const { wallS } = run;
    const peakMiB = maxRssKiB / 1024;
    const lines = await checkOutput(output);
    const expected = assets * sets;
    // The target is for the full size; a quick run scales it (and holds nobody to it).
    const wallTarget = 5 * (assets / 100_000);
    return {
      name: 'dispatch',
      title: `dispatch: ${formatNumber(assets)} catalog assets x ${sets} parameter sets (the real CLI, in its own process)`,
      measurements: [
        { subject: 'caas dispatch wall time', value: wallS, unit: 's', detail: 'process start to exit, SQLite catalog' },
        { subject: 'caas dispatch throughput', value: lines / wallS, unit: 'jobs/s' },
        { subject: 'caas dispatch CPU (user + system)', value: cpuUs / 1e6, unit: 's' },
        { subject: 'caas dispatch peak RSS', value: peakMiB, unit: 'MiB' },
        { subject: 'job lines written (checked against JobInput)', value: lines, unit: 'lines' },
      ],
      targets: [
        verify(`${formatNumber(expected)} valid job lines`, formatNumber(lines), lines === expected),
        check(`wall <= ${formatNumber(wallTarget)} s`, `${formatNumber(wallS)} s`, wallS <= wallTarget),
        check('peak RSS <= 300 MB', `${formatNumber((maxRssKiB * 1024) / 1e6)} MB`, maxRssKiB * 1024 <= 300e6),
      ],
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
