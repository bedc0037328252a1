import { existsSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumAvailable = existsSync(CHROMIUM);
if (!chromiumAvailable) {
  console.warn(`web end-to-end tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
}

/** Debian's Chromium, headless, with nothing that would reach the network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
  });
}

/** Screenshots go to docs/screenshots with SCREENSHOTS=1 (to refresh the README's), else to a temp dir. */
const SHOT_DIR = process.env.SCREENSHOTS
  ? path.resolve(import.meta.dirname, '../../../../docs/screenshots')
  : path.join(tmpdir(), 'steward-web-screenshots');
mkdirSync(SHOT_DIR, { recursive: true });

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOT_DIR, `${name}.png`), fullPage: false });
}

/** Console errors of a page, less the network failures a test causes on purpose. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (
      m.type() === 'error' &&
      !/Failed to load resource|ERR_INTERNET_DISCONNECTED|EventSource/.test(m.text())
    )
      errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return errors;
}
