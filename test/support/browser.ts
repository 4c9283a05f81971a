import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium: playwright's own browser download does not work here, and CI installs this one (.ci/run). */
export const CHROMIUM = process.env.CAAS_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Starts chromium headless, or fails with what to do: a browser test that cannot find its browser
 * must fail, never pass by skipping.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the browser tests need chromium at ${CHROMIUM} (apt-get install -y chromium, as .ci/run does; or set CAAS_CHROMIUM to its path)`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}
