import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenHash } from '../server/tokens.ts';
import { launchChromium } from './support/browser.ts';
import { call, startServer } from './support/service.ts';
import { AnalysisRepo, removeDir, runCli, scratchDir } from './support/workspace.ts';

/**
 * The analysts' page in a real browser (Debian's chromium, driven by playwright-core) against a
 * real `caas serve` process on 127.0.0.1: the sample catalog, unit-filter in a git repository,
 * jobs in child processes (--compute local), SQLite and folder buckets.
 */
describe('caas serve: the web page', () => {
  let base: string;
  let home: string;
  let repo: AnalysisRepo;
  let server: { child: ChildProcess; url: string; stderr: () => string };
  let browser: Browser;
  const stops: (() => Promise<void>)[] = [];

  const serve = async (env: Record<string, string> = {}) => {
    const started = await startServer(['serve', '--port', '0', '--compute', 'local', '--concurrency', '2'], {
      CAAS_HOME: home,
      CAAS_ANALYSES: repo.dir,
      ...env,
    });
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          if (started.child.exitCode !== null) return resolve();
          started.child.once('exit', () => resolve());
          started.child.kill('SIGTERM');
        }),
    );
    return started;
  };

  /** A page that records the host of every request it makes, to prove it reaches nothing but the server. */
  const openPage = async (width: number, height = 900) => {
    const page = await browser.newPage({ viewport: { width, height }, acceptDownloads: true });
    const hosts = new Set<string>();
    const errors: string[] = [];
    page.on('request', (request) => hosts.add(new URL(request.url()).host));
    page.on('pageerror', (error) => errors.push(error.message));
    return { page, hosts, errors };
  };

  beforeAll(async () => {
    base = scratchDir('serve-page');
    home = path.join(base, 'home');
    repo = new AnalysisRepo(base, ['unit-filter']);
    const sample = await runCli(['catalog', 'generate-sample'], { env: { CAAS_HOME: home, CAAS_ANALYSES: repo.dir } });
    expect(sample.code, sample.stderr).toBe(0);
    server = await serve();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    for (const stop of stops) await stop();
    if (base) removeDir(base);
  });

  const pickSessions = async (page: Page, search: string) => {
    await page.getByLabel('Search the catalog').fill(search);
    await page.getByRole('button', { name: 'Select shown' }).click();
    await page.getByLabel('File extension').fill('.spikes.json');
  };
  const count = (page: Page, action: string) => page.locator(`.counts [data-action="${action}"] strong`);

  it('fills the unit-filter form, shows the server’s field error, previews the plan, runs it and shows the job, its log, outputs and provenance', async () => {
    const { page, hosts, errors } = await openPage(1280);
    await page.goto(server.url);
    await page.getByRole('heading', { name: 'Analyses', level: 1 }).waitFor();
    await page.getByRole('link', { name: 'unit-filter' }).click();

    // The form comes from the JSON Schema: defaults filled in, descriptions and ranges as hints.
    const cutoff = page.getByLabel('isi_violations_cutoff');
    await expect(cutoff.inputValue()).resolves.toBe('0.05');
    await expect(page.locator('#param-isi_violations_cutoff-hint').textContent()).resolves.toMatch(
      /ratio is at most this .*≥ 0 and ≤ 1 .*default 0\.05/,
    );

    await pickSessions(page, '774659');
    await expect(page.locator('#dataset-status').textContent()).resolves.toMatch(/^3 of 6 selected/);
    await expect(count(page, 'RUN').filter({ hasText: '3' }).waitFor()).resolves.toBeUndefined();

    // A value the model refuses: the server's message, from its zod issue path, beside the field.
    await cutoff.fill('1.5');
    const fieldError = page.locator('#param-isi_violations_cutoff-error');
    await fieldError.filter({ hasText: /\S/ }).waitFor();
    expect(await fieldError.textContent()).toMatch(/Too big: expected number to be <=1/);
    expect(await cutoff.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('.plan').textContent()).toMatch(/No plan/);

    await cutoff.fill('0.2');
    await count(page, 'RUN').filter({ hasText: '3' }).waitFor();
    expect(await fieldError.isVisible()).toBe(false);
    expect(await cutoff.getAttribute('aria-invalid')).toBeNull();
    expect(await count(page, 'SKIP').textContent()).toBe('0');
    expect(await count(page, 'INVALID').textContent()).toBe('0');
    expect(await page.locator('.plan tbody tr').count()).toBe(3);

    await page.getByRole('button', { name: 'Run the plan' }).click();
    await page.getByRole('heading', { name: 'Submitted: 3 jobs queued' }).waitFor();
    const jobLink = page.locator('.outcome a').first();
    const identity = (await jobLink.getAttribute('href'))!.replace('#/jobs/', '');
    await jobLink.click();

    // The job page follows the job live: the state and the agent's status reach SUCCESS, the log's lines arrive.
    await page.locator('.state[data-state="succeeded"]').waitFor({ timeout: 60_000 });
    expect(await page.locator('.state').textContent()).toMatch(/agent SUCCESS/);
    expect(await page.locator('pre.log').textContent()).toMatch(/ecephys_774659_\S+: \d+ of 12 units pass \(cutoff 0\.2\)/);
    await page.locator('pre.certificate').waitFor();
    expect(await page.locator('pre.certificate').textContent()).toMatch(/job succeeded/);

    // Download an output: the bytes are the file in the job folder.
    const status = await call(server.url, 'GET', `/api/jobs/${identity}`);
    const folder = status.body.job_folder.replace(/^file:\/\//, '');
    const stored = readFileSync(path.join(home, 'buckets', folder, 'process_results', 'summary.json'));
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'summary.json' }).click()]);
    expect(download.suggestedFilename()).toBe('summary.json');
    expect(readFileSync((await download.path())!)).toEqual(stored);
    expect(JSON.parse(stored.toString())).toMatchObject({ n_units: 12 });

    // The record: the commit the analysis ran at and the parameters, as validated (defaults in).
    await page.getByRole('link', { name: 'Provenance and why' }).click();
    await page.locator('.commit').waitFor();
    expect(await page.locator('.commit').textContent()).toBe(repo.head());
    const parameters = await page.locator('dl.parameters').textContent();
    expect(parameters).toContain('isi_violations_cutoff0.2');
    expect(parameters).toContain('refractory_ms1.5');
    expect(parameters).toContain('analysis_tag"default"');
    expect(await page.locator('.inputs').textContent()).toContain('units.spikes.json');

    expect(errors).toEqual([]);
    expect([...hosts]).toEqual([new URL(server.url).host]);
    await page.close();
  });

  it('the plan says SKIP for jobs already run, and "why" names the parameter that made another job run again', async () => {
    const { page, hosts, errors } = await openPage(1280);
    await page.goto(`${server.url}/#/analyses/unit-filter`);
    await page.getByLabel('isi_violations_cutoff').fill('0.2');
    await pickSessions(page, '774659');
    await count(page, 'SKIP').filter({ hasText: '3' }).waitFor({ timeout: 30_000 });
    expect(await count(page, 'RUN').textContent()).toBe('0');
    expect(await page.locator('.plan tbody').textContent()).toMatch(/succeeded/);

    // One session again with another cutoff: a new identity, so it runs; its record says why.
    await page.getByRole('button', { name: 'Clear' }).click();
    await pickSessions(page, '774659 2024-03-04');
    await page.getByLabel('isi_violations_cutoff').fill('0.3');
    await count(page, 'RUN').filter({ hasText: '1' }).waitFor();
    await page.getByRole('button', { name: 'Run the plan' }).click();
    await page.getByRole('heading', { name: 'Submitted: 1 job queued' }).waitFor();
    await page.locator('.outcome a').first().click();
    await page.locator('.state[data-state="succeeded"]').waitFor({ timeout: 60_000 });
    await page.getByRole('link', { name: 'Provenance and why' }).click();
    const why = page.locator('section.why').first();
    await why.waitFor();
    expect(await why.locator('tbody tr').count()).toBe(1);
    expect(await why.locator('tbody').textContent()).toBe('parameters.isi_violations_cutoff0.30.2');

    expect(errors).toEqual([]);
    expect([...hosts]).toEqual([new URL(server.url).host]);
    await page.close();
  });

  it('at a phone’s width (390 px) the form fits without scrolling sideways and works from the keyboard', async () => {
    const { page, hosts } = await openPage(390, 844);
    await page.goto(`${server.url}/#/analyses/unit-filter`);
    await page.getByLabel('isi_violations_cutoff').waitFor();
    const widths = (await page.evaluate(
      '({ page: document.documentElement.scrollWidth, body: document.body.scrollWidth, view: innerWidth })',
    )) as {
      page: number;
      body: number;
      view: number;
    };
    expect(widths.page).toBeLessThanOrEqual(widths.view);
    expect(widths.body).toBeLessThanOrEqual(widths.view);

    // Focus moved to the new view, so the first Tab lands in its content; the fields follow in
    // reading order, each with a visible focus ring.
    await page.keyboard.press('Tab');
    expect(await page.evaluate("document.activeElement?.closest('main') !== null")).toBe(true);
    await page.getByLabel('isi_violations_cutoff').focus();
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.id')).toBe('param-refractory_ms');
    expect(await page.evaluate('getComputedStyle(document.activeElement).outlineStyle')).not.toBe('none');
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.id')).toBe('param-analysis_tag');

    // The skip link moves the focus into the content and leaves the view as it is.
    await page.locator('a.skip').focus();
    await page.keyboard.press('Enter');
    expect(await page.evaluate('document.activeElement?.id')).toBe('main');
    expect(await page.getByText('Something went wrong').count()).toBe(0);
    await page.getByLabel('isi_violations_cutoff').waitFor();

    // Pick a dataset with the keyboard: search, Tab to "Select shown", Space.
    await page.getByLabel('Search the catalog').fill('774660 2024-03-05');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');
    await page.getByLabel('File extension').fill('.spikes.json');
    await count(page, 'RUN').filter({ hasText: '1' }).waitFor();
    const plan = await page.locator('.plan').boundingBox();
    expect(plan!.x + plan!.width).toBeLessThanOrEqual(390);
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    expect([...hosts]).toEqual([new URL(server.url).host]);
    await page.close();
  });

  it('with tokens the page asks for one once, keeps it for the tab, and asks again after a 401', async () => {
    const secret = 'caas_page-test-token';
    // Tokens from the environment only: a tokens file named on purpose must exist, so this one is empty.
    const none = path.join(base, 'empty-tokens.json');
    writeFileSync(none, '{"tokens": []}\n');
    const guarded = await serve({ CAAS_TOKENS: `caas:${tokenHash(secret)}`, CAAS_TOKENS_FILE: none });
    const { page } = await openPage(1280);
    await page.goto(guarded.url);
    const dialog = page.getByRole('dialog', { name: 'Bearer token' });
    await dialog.waitFor();
    await page.locator('#token-input').fill('wrong');
    await page.keyboard.press('Enter');
    await expect(page.locator('#token-why').filter({ hasText: 'refused this token' }).waitFor()).resolves.toBeUndefined();
    await page.locator('#token-input').fill(secret);
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.getByRole('link', { name: 'unit-filter' }).waitFor();
    expect(await page.evaluate("sessionStorage.getItem('caas-token')")).toBe(secret);
    // Another view, no question: the token is kept.
    await page.getByRole('link', { name: 'unit-filter' }).click();
    await page.getByLabel('isi_violations_cutoff').waitFor();
    expect(await dialog.isVisible()).toBe(false);
    await page.close();
  });
});
