/**
 * `npm run screenshots`: the pictures of the analysts' page in README.md and docs/serve.md, taken
 * from a real `caas serve` over the sample catalog (unit-filter in a scratch git repository, jobs in
 * child processes), in Debian's chromium. Writes docs/img/page-*.png; run it again after changing
 * the page, then look at them.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium } from '../test/support/browser.ts';
import { call, startServer, until } from '../test/support/service.ts';
import { AnalysisRepo, ROOT, removeDir, runCli, scratchDir } from '../test/support/workspace.ts';

const OUT = path.join(ROOT, 'docs', 'img');

async function dispatch(url: string, body: Record<string, unknown>): Promise<string[]> {
  const answer = await call(url, 'POST', '/api/dispatch', {
    body: { analysis: 'unit-filter', file_ext: '.spikes.json', execute: true, ...body },
  });
  if (answer.status !== 202) throw new Error(`dispatch answered ${answer.status}: ${answer.text}`);
  const identities: string[] = answer.body.jobs.map((job: { identity: string }) => job.identity);
  for (const identity of identities) {
    await until(`job ${identity} to succeed`, async () => (await call(url, 'GET', `/api/jobs/${identity}`)).body.state === 'succeeded');
  }
  return identities;
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(OUT, name), fullPage: true });
  process.stdout.write(`wrote docs/img/${name}\n`);
}

const base = scratchDir('screenshots');
const home = path.join(base, 'home');
const repo = new AnalysisRepo(base, ['unit-filter']);
const env = { CAAS_HOME: home, CAAS_ANALYSES: repo.dir };
const sample = await runCli(['catalog', 'generate-sample'], { env });
if (sample.code !== 0) throw new Error(sample.stderr);
const server = await startServer(['serve', '--port', '0', '--compute', 'local', '--concurrency', '2'], env);
const browser = await launchChromium();
try {
  mkdirSync(OUT, { recursive: true });
  // History for the plan and the why view: subject 774659 at the default cutoff, one session also at 0.2.
  const [first] = await dispatch(server.url, { query: { 'subject.subject_id': '774659' } });
  await dispatch(server.url, { query: { name: 'ecephys_774659_2024-03-04_10-00-00_processed' }, params: { isi_violations_cutoff: 0.2 } });

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(server.url);
  await page.locator('table.jobs tbody tr').first().waitFor();
  await shoot(page, 'page-analyses.png');

  await page.getByRole('link', { name: 'unit-filter' }).click();
  await page.getByRole('button', { name: 'Select shown' }).click();
  await page.getByLabel('File extension').fill('.spikes.json');
  await page.locator('.counts [data-action="SKIP"] strong').filter({ hasText: '3' }).waitFor();
  await page.getByLabel('File extension').blur();
  await shoot(page, 'page-form.png');

  await page.getByRole('button', { name: 'Run the plan' }).click();
  await page.getByRole('heading', { name: /^Submitted/ }).waitFor();
  await page.locator('.outcome a').first().click();
  await page.locator('.state[data-state="succeeded"]').waitFor({ timeout: 60_000 });
  await page.locator('ul.outputs').waitFor();
  await shoot(page, 'page-job.png');

  await page.goto(`${server.url}/#/records/${first}`);
  await page.locator('section.why').first().waitFor();
  await shoot(page, 'page-record.png');

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(`${server.url}/#/analyses/unit-filter`);
  await phone.getByLabel('Search the catalog').fill('774660');
  await phone.getByRole('button', { name: 'Select shown' }).click();
  await phone.getByLabel('File extension').fill('.spikes.json');
  await phone.getByLabel('isi_violations_cutoff').fill('1.5');
  await phone.locator('#param-isi_violations_cutoff-error').filter({ hasText: /\S/ }).waitFor();
  await phone.getByLabel('isi_violations_cutoff').blur();
  await phone.evaluate('window.scrollTo(0, 0)');
  await phone.screenshot({ path: path.join(OUT, 'page-phone.png') });
  process.stdout.write('wrote docs/img/page-phone.png\n');
} finally {
  await browser.close();
  server.child.kill('SIGTERM');
  await new Promise((resolve) => server.child.once('exit', resolve));
  removeDir(base);
}
