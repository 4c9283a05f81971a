/**
 * unit-filter's command: reads $CAAS_INPUT (spike trains) and $CAAS_CONFIG (parameters), writes
 * passing_units.csv, summary.json and isi_violations.svg into $CAAS_OUTPUT_DIR. Exit 1 when the
 * input or config is unusable, 2 when the agent's environment is incomplete.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { renderIsiHistogram } from './histogram-svg.ts';
import { filterUnits, SpikeTrains, type UnitResult } from './isi.ts';
import { UnitFilterParameters } from './parameters.ts';

class UsageError extends Error {}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new UsageError(`environment variable ${name} is not set: unit-filter must be run by the caas agent`);
  return value;
}

/** Parses a JSON file against a model; the message names the file and the field that is wrong. */
async function readJsonFile<T>(file: string, model: z.ZodType<T>, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${what} ${file}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} ${file} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = model.safeParse(data);
  if (!parsed.success) throw new Error(`${what} ${file} is not in the expected format:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function passingCsv(results: readonly UnitResult[]): string {
  const rows = results.filter((r) => r.passes).map((r) => [r.unit_id, r.n_spikes, r.isi_violation_ratio].map(csvField).join(','));
  return `${['unit_id,n_spikes,isi_violation_ratio', ...rows].join('\n')}\n`;
}

async function main(): Promise<void> {
  const inputFile = requireEnv('CAAS_INPUT');
  const configFile = requireEnv('CAAS_CONFIG');
  const outputDir = requireEnv('CAAS_OUTPUT_DIR');

  const params = await readJsonFile(configFile, UnitFilterParameters, 'config');
  const trains = await readJsonFile(inputFile, SpikeTrains, 'spike-train file');
  const results = filterUnits(trains, params);
  for (const r of results) if (r.note) console.log(`unit ${r.unit_id}: ${r.note}`);

  const summary = {
    session: trains.session,
    analysis_tag: params.analysis_tag,
    isi_violations_cutoff: params.isi_violations_cutoff,
    refractory_ms: params.refractory_ms,
    n_units: results.length,
    n_passing: results.filter((r) => r.passes).length,
  };
  const svg = renderIsiHistogram(
    results.map((r) => r.isi_violation_ratio),
    { cutoff: params.isi_violations_cutoff, refractoryMs: params.refractory_ms, session: trains.session },
  );
  await writeFile(path.join(outputDir, 'passing_units.csv'), passingCsv(results));
  await writeFile(path.join(outputDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  await writeFile(path.join(outputDir, 'isi_violations.svg'), svg);
  console.log(`${summary.session}: ${summary.n_passing} of ${summary.n_units} units pass (cutoff ${params.isi_violations_cutoff})`);
}

main().catch((error: unknown) => {
  console.error(`unit-filter: ${(error as Error).message}`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
