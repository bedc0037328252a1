/// <reference lib="dom" />
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  TEST_PASSWORD,
  waitForTask,
  type TenantFixture,
  type TestApp,
} from '../../server/src/testing/test-app.ts';
import { startWorker, type WorkerHandle } from '../../server/src/worker/worker-runner.ts';
import { ensureWebBuild } from '../build/ensure-build.ts';
import { chromiumAvailable, launchChromium, watchConsole } from './testing/browser.ts';

/**
 * axe-core, evaluated in each page (through the DevTools protocol: the page's CSP, which forbids
 * inline scripts, stays as it is): WCAG 2.1 A/AA rules (labels, names, contrast, landmarks…).
 */
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;
let browser: Browser;
let base: string;
const contexts: BrowserContext[] = [];

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary?: string }[];
}

/** Serious and critical violations on the page as it is now (each with where and why). */
async function seriousViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<unknown> } })
      .axe;
    const r = (await axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
      resultTypes: ['violations'],
    })) as { violations: AxeViolation[] };
    return r.violations;
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.help} — ${v.nodes
          .slice(0, 3)
          .map((n) => `${n.target.join(' ')}: ${n.failureSummary ?? ''}`)
          .join(' | ')}`,
    );
}

let counter = 0;
async function invoice(subject: string): Promise<string> {
  const r = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/events',
      headers: bearer(a.apiKey),
      payload: {
        source: 'email',
        type: 'message',
        externalId: `a11y-${++counter}-${Date.now()}`,
        from: 'billing@vendor.test',
        subject,
        body: 'Amount due: 250 EUR',
      },
    }),
    202,
  );
  return (r.json() as { taskId: string }).taskId;
}

async function newPage(width: number) {
  const context = await browser.newContext({
    viewport: { width, height: width < 500 ? 740 : 800 },
    ...(width < 500 ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
  });
  contexts.push(context);
  const page = await context.newPage();
  return { page, errors: watchConsole(page) };
}

/** The accessible name (label) of whatever has the keyboard focus. */
const focused = (page: Page) =>
  page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (!el) return '';
    const labelled = (el as HTMLInputElement).labels?.[0]?.textContent;
    return `${el.tagName.toLowerCase()}:${(labelled ?? el.getAttribute('aria-label') ?? el.textContent ?? '').trim()}`;
  });

/** Press Tab until the focus is on what `want` matches (at most `max` presses). */
async function tabTo(page: Page, want: RegExp, max = 60): Promise<void> {
  const seen: string[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const now = await focused(page);
    seen.push(now);
    if (want.test(now)) return;
  }
  throw new Error(`Tab never reached ${want}; focus went through: ${seen.join(' → ')}`);
}

describe.skipIf(!chromiumAvailable)('web dashboard accessibility, in Chromium', () => {
  beforeAll(async () => {
    await ensureWebBuild();
    t = await createTestApp();
    a = await createTenantFixture(t, 'a11y');
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/playbooks',
        headers: bearer(a.token),
        payload: {
          name: 'Invoices',
          when: { subject: { contains: 'invoice' } },
          steps: [{ key: 'pay', tool: 'noop', args: { note: 'pay {{event.subject}}' }, risk: 'high' }],
        },
      }),
      201,
    );
    worker = await startWorker(t.res, {
      appUrl: t.runtime.appUrl,
      concurrency: 2,
      pollIntervalMs: 200,
      log: () => {},
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = t.app.server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await worker?.stop();
    await t?.close();
  });

  it('keyboard only: sign in, open the approvals and approve a task', async () => {
    const taskId = await invoice('Invoice for the keyboard');
    await waitForTask(t, a.tenant.id, taskId, ['pending_approval']);
    const { page, errors } = await newPage(1280);
    await page.goto(base);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await tabTo(page, /^input:Email/);
    await page.keyboard.type(a.ownerEmail);
    await tabTo(page, /^input:Password/);
    await page.keyboard.type(TEST_PASSWORD);
    await tabTo(page, /^button:Sign in$/);
    await page.keyboard.press('Enter');
    await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();

    // The first Tab offers the skip link; then the main navigation.
    await page.keyboard.press('Tab');
    expect(await focused(page)).toBe('a:Skip to content');
    await tabTo(page, /^a:Approvals/);
    await page.keyboard.press('Enter');
    const card = page.locator('article.approval').filter({ hasText: 'Invoice for the keyboard' });
    await card.waitFor();
    await tabTo(page, /^textarea:Comment|^input:Comment/);
    await page.keyboard.type('approved with the keyboard');
    await tabTo(page, /^button:Approve$/);
    // The focused control is inside this task's card, and visibly focused.
    expect(await card.evaluate((el) => el.contains(document.activeElement))).toBe(true);
    const outline = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement!);
      return `${s.outlineStyle} ${s.outlineWidth}`;
    });
    expect(outline).not.toMatch(/^none|\b0px$/);
    await page.keyboard.press('Enter');
    await card.getByText('Approved.').waitFor();
    const done = await waitForTask(t, a.tenant.id, taskId, ['done']);
    expect(done.status).toBe('done');
    expect(errors).toEqual([]);
  });

  for (const width of [1280, 360]) {
    it(`axe: no serious or critical violation on the main screens at ${width} px`, async () => {
      const taskId = await invoice(`Invoice for axe at ${width}`);
      await waitForTask(t, a.tenant.id, taskId, ['pending_approval']);
      const { page, errors } = await newPage(width);
      const found: Record<string, string[]> = {};

      await page.goto(base);
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      found['sign-in'] = await seriousViolations(page);
      // Negative control: the same check catches an unlabelled field and low-contrast text.
      await page.evaluate(() => {
        const probe = document.createElement('div');
        probe.id = 'axe-probe';
        probe.innerHTML = '<input type="text"><p style="color:#c8c8c8;background:#ffffff">faint text</p>';
        document.querySelector('main, form, body')!.appendChild(probe);
      });
      const control = await seriousViolations(page);
      expect(control.some((v) => v.startsWith('label '))).toBe(true);
      expect(control.some((v) => v.startsWith('color-contrast '))).toBe(true);
      await page.evaluate(() => document.getElementById('axe-probe')!.remove());
      // The error state of the form too.
      await page.getByLabel('Email').fill(a.ownerEmail);
      await page.getByLabel('Password').fill('wrong password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      found['sign-in (error)'] = await seriousViolations(page);

      await page.getByLabel('Password').fill(TEST_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
      await page.locator(`[data-task-id="${taskId}"]`).first().waitFor();
      await page
        .getByTestId('connection-health')
        .or(page.getByText('No connections or MCP servers yet.'))
        .first()
        .waitFor();
      found['overview'] = await seriousViolations(page);

      await page.goto(`${base}/tasks/${taskId}`);
      await page.locator('[data-task-status]').first().waitFor();
      found['task detail'] = await seriousViolations(page);

      await page.goto(`${base}/approvals`);
      await page.locator('article.approval').first().waitFor();
      found['approvals'] = await seriousViolations(page);

      await page.goto(`${base}/audit`);
      await page.getByRole('heading', { name: /Audit/ }).first().waitFor();
      found['audit'] = await seriousViolations(page);

      await page.goto(`${base}/admin`);
      await page.getByRole('heading', { name: 'Organisation settings' }).waitFor();
      await page.getByRole('heading', { name: 'Connections and MCP servers' }).waitFor();
      found['admin'] = await seriousViolations(page);
      await page.getByRole('button', { name: 'New MCP server' }).click();
      await page.getByLabel('MCP server name').waitFor();
      await page.getByRole('button', { name: 'New role' }).click();
      found['admin (editors open)'] = await seriousViolations(page);

      const bad = Object.entries(found).filter(([, v]) => v.length > 0);
      expect(bad, JSON.stringify(bad, null, 2)).toEqual([]);
      expect(errors).toEqual([]);
    });
  }
});
