/**
 * The web page end to end in a real browser: Debian's Chromium driven by playwright-core, against
 * the real local server (`createQueryServer`) over an index that the embed pipeline built from the
 * example notes with the tiny fixture model. The fixture's rankings are meaningless, so the tests
 * compare what the page shows with what the API answers, never with a hoped-for order.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXAMPLE_NOTES_DIR } from '../../cli/src/start.ts';
import { ingestLocal } from '../../functions/embed/src/local.ts';
import { openQueryService } from '../../functions/query/src/open.ts';
import type { SearchResponse } from '../../functions/query/src/schemas.ts';
import { createQueryServer, type RunningQueryServer } from '../../functions/query/src/server.ts';
import type { QueryService } from '../../functions/query/src/service.ts';
import { resolveModelBundle } from '../../layers/encoder/src/resolve.ts';
import { tempDir } from '../helpers/encoder.ts';

const CHROMIUM = '/usr/bin/chromium';
/** Quiet test output; the server logs ids and counts only anyway. */
const silent = { debug() {}, info() {}, warn() {} };
/** How long a poll waits: generous, because CI runs every test file at once on two cores. */
const WAIT = { timeout: 20_000 };
const QUERY = 'new-onset atrial fibrillation after CABG discharged on apixaban';

let cleanup: () => Promise<void>;
let service: QueryService;
let server: RunningQueryServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Console errors and page errors of the current test (CSP violations show up here). */
let problems: string[];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
  let root: string;
  ({ dir: root, cleanup } = await tempDir('cohort-web-'));
  const model = await resolveModelBundle('fixture', { cacheDir: join(root, 'cache') });
  const index = join(root, 'index');
  await ingestLocal({
    paths: [EXAMPLE_NOTES_DIR],
    data: index,
    model: model.dir,
    workDir: join(root, 'work'),
    logger: silent,
  });
  service = await openQueryService({
    modelDir: model.dir,
    indexUri: index,
    audit: join(root, 'audit'),
    cacheDir: join(root, 'segments'),
    logger: silent,
  });
  server = await createQueryServer({ service, port: 0 });
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await service?.close();
  await cleanup?.();
});

beforeEach(async () => {
  await context?.close();
  context = await browser.newContext({ acceptDownloads: true });
  page = await context.newPage();
  problems = [];
  page.on('console', (m) => {
    // The browser asks for /favicon.ico, which the page does not have: that 404 is expected.
    if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${server.url}/`);
});

/** What the API answers for a search body, straight from the server. */
async function api(body: Record<string, unknown>): Promise<SearchResponse> {
  const r = await fetch(`${server.url}/v1/search`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(r.status).toBe(200);
  return (await r.json()) as SearchResponse;
}

async function search(query: string, k?: number): Promise<void> {
  if (k !== undefined) await page.getByLabel('Patients to return').fill(String(k));
  await page.getByLabel('Describe the patients you are looking for').fill(query);
  await page.getByLabel('Describe the patients you are looking for').press('Enter');
  await expect.poll(() => page.locator('#result-count').textContent(), WAIT).toMatch(/found\.$/);
}

/** The patient ids of the table, top to bottom. */
function tablePatients(): Promise<string[]> {
  return page.locator('#cohort-body tr.patient-row th').allTextContents();
}

describe('web page', () => {
  it('shows the health line of the server and the fixture model banner', async () => {
    const health = (await (await fetch(`${server.url}/v1/health`)).json()) as {
      model: { fingerprint: string; fixture?: boolean };
      chunks: number;
      container: string;
    };
    expect(health.model.fixture).toBe(true);
    const short = health.model.fingerprint.slice(0, 'sha256:'.length + 12);
    await expect
      .poll(() => page.locator('#health').textContent(), WAIT)
      .toBe(
        `Model ${short}… (tiny random fixture model) · index version 1 · ${health.chunks} chunks · ${health.container}`,
      );
    expect(await page.locator('#fixture-banner').isVisible()).toBe(true);
    expect(await page.locator('#fixture-banner').textContent()).toContain('meaningless');
  });

  it('answers a typed query with the cohort the API gives, rank by rank', async () => {
    await search(QUERY, 5);
    const expected = await api({ query: QUERY, k: 5 });
    expect(await page.locator('#result-count').textContent()).toBe('5 patients found.');
    expect(await tablePatients()).toEqual(expected.cohort.map((p) => p.patientId));
    const first = page.locator('#cohort-body tr.patient-row').first();
    const cells = await first.locator('td, th').allTextContents();
    const top = expected.cohort[0]!;
    expect(cells.slice(0, 4)).toEqual([
      '1',
      top.patientId,
      top.score.toFixed(3),
      // The API's count of matching notes, which can exceed the notes among the evidence shown.
      String(top.matchingNotes),
    ]);
    expect(problems).toEqual([]);
  });

  it('opens and closes evidence from the keyboard, with the matching span highlighted', async () => {
    await search(QUERY, 5);
    const expected = await api({ query: QUERY, k: 5 });
    // Tab from the last export button reaches the first row's evidence button.
    await page.getByRole('button', { name: 'Download FHIR Group' }).focus();
    await page.keyboard.press('Tab');
    const firstButton = page.locator('#cohort-body button.expand').first();
    await expect.poll(() => firstButton.evaluate((b) => b === document.activeElement), WAIT).toBe(true);
    // Keyboard focus is visible: a solid 3 px ring.
    expect(await firstButton.evaluate((b) => getComputedStyle(b).outlineStyle)).toBe('solid');
    expect(await firstButton.evaluate((b) => getComputedStyle(b).outlineWidth)).toBe('3px');
    expect(await firstButton.getAttribute('aria-expanded')).toBe('false');
    await page.keyboard.press('Enter');
    expect(await firstButton.getAttribute('aria-expanded')).toBe('true');
    const detail = page.locator(`#${await firstButton.getAttribute('aria-controls')}`);
    expect(await detail.isVisible()).toBe(true);

    const evidence = expected.cohort[0]!.evidence;
    const items = detail.locator('li.evidence');
    expect(await items.count()).toBe(evidence.length);
    for (const [i, e] of evidence.entries()) {
      const item = items.nth(i);
      expect(await item.locator('.note-type').textContent()).toBe(`Note type: ${e.noteType}`);
      expect(await item.locator('.note-date').textContent()).toBe(`Date: ${e.noteDate}`);
      expect(await item.locator('.badge').textContent()).toBe(e.assertion);
      expect(await item.locator('blockquote').textContent()).toBe(e.snippet);
      const marks = await item.locator('mark').allTextContents();
      expect(marks).toEqual(e.highlights.map(([s, end]) => e.snippet!.slice(s, end)));
    }

    // Arrow down moves to the next row's button; Space opens it; Enter on the first closes it.
    await page.keyboard.press('ArrowDown');
    const second = page.locator('#cohort-body button.expand').nth(1);
    await expect.poll(() => second.evaluate((b) => b === document.activeElement), WAIT).toBe(true);
    await page.keyboard.press('Space');
    expect(await second.getAttribute('aria-expanded')).toBe('true');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    expect(await firstButton.getAttribute('aria-expanded')).toBe('false');
    expect(await detail.isVisible()).toBe(false);
    expect(problems).toEqual([]);
  });

  it('downloads the cohort on screen as CSV and as a FHIR Group', async () => {
    await search(QUERY, 4);
    const shown = await tablePatients();

    const [csvDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV' }).click(),
    ]);
    const csv = await readFile((await csvDownload.path())!, 'utf8');
    expect(csvDownload.suggestedFilename()).toMatch(/\.csv$/);
    const lines = csv.trim().split(/\r?\n/);
    expect(lines[0]).toMatch(/^rank,patientId,score,/);
    expect(lines).toHaveLength(shown.length + 1);
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 2))).toEqual(
      shown.map((p, i) => [String(i + 1), p]),
    );

    const [fhirDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download FHIR Group' }).click(),
    ]);
    const group = JSON.parse(await readFile((await fhirDownload.path())!, 'utf8')) as {
      resourceType: string;
      actual: boolean;
      member: { entity: { reference: string } }[];
    };
    expect(group.resourceType).toBe('Group');
    expect(group.actual).toBe(true);
    expect(group.member.map((m) => m.entity.reference)).toEqual(shown.map((p) => `Patient/${p}`));
    expect(await page.locator('#result-count').textContent()).toMatch(/Downloaded .+\.json\.$/);
    expect(problems).toEqual([]);
  });

  it('sends the filters: only discharge summaries, any assertion, leaving a section out', async () => {
    await page.getByLabel('Note types').fill('Discharge summary');
    await page.getByLabel('Any mention, whatever its assertion').check();
    await page.getByLabel('Leave out these sections').selectOption(['family_history']);
    await search(QUERY);
    const expected = await api({
      query: QUERY,
      k: 50,
      assertion: 'any',
      filters: { noteTypes: ['Discharge summary'], sections: { exclude: ['family_history'] } },
    });
    const shown = await tablePatients();
    expect(shown).toEqual(expected.cohort.map((p) => p.patientId));
    // The example notes hold discharge summaries of these four patients only.
    expect([...shown].sort()).toEqual(['medspacy-p1', 'syn-p01', 'syn-p02', 'syn-p04']);
    for (const button of await page.locator('#cohort-body button.expand').all()) await button.click();
    const types = await page.locator('#cohort-body .note-type').allTextContents();
    expect(new Set(types)).toEqual(new Set(['Note type: Discharge summary']));
    const sections = await page.locator('#cohort-body .section').allTextContents();
    expect(sections).not.toContain('Section: Family history');
  });

  it('sends a date range and sections to keep', async () => {
    await page.getByLabel('Notes from').fill('2024-01-01');
    await page.getByLabel('Notes until').fill('2024-12-31');
    await page.getByLabel('Only these sections').selectOption(['hospital_course', 'assessment_and_plan']);
    await page.getByLabel('Any mention, whatever its assertion').check();
    await search(QUERY);
    const expected = await api({
      query: QUERY,
      k: 50,
      assertion: 'any',
      filters: {
        dateFrom: '2024-01-01',
        dateTo: '2024-12-31',
        sections: { include: ['hospital_course', 'assessment_and_plan'] },
      },
    });
    const shown = await tablePatients();
    expect(shown).toEqual(expected.cohort.map((p) => p.patientId));
    // Only the synthetic notes are dated 2024, and syn-p03's are from 2023.
    expect([...shown].sort()).toEqual(['syn-p01', 'syn-p02', 'syn-p04', 'syn-p05']);
    for (const button of await page.locator('#cohort-body button.expand').all()) await button.click();
    for (const date of await page.locator('#cohort-body .note-date').allTextContents())
      expect(date).toMatch(/^Date: 2024-/);
    const sections = new Set(await page.locator('#cohort-body .section').allTextContents());
    for (const section of sections)
      expect(['Section: Hospital course', 'Section: Assessment and plan']).toContain(section);
  });

  it("shows the API's field errors and marks the field, in an alert", async () => {
    await search(QUERY, 3);
    // A control character passes the page's own checks; the API refuses it.
    await page.getByLabel('Describe the patients you are looking for').fill('atrial\u0001fibrillation');
    await page.getByRole('button', { name: 'Search' }).click();
    const error = page.getByRole('alert').filter({ hasText: 'query' });
    await expect.poll(() => error.textContent(), WAIT).toMatch(/query: .*control character/);
    expect(
      await page.getByLabel('Describe the patients you are looking for').getAttribute('aria-invalid'),
    ).toBe('true');
    expect(await page.locator('#result-count').textContent()).toBe('The search failed.');
  });

  it('says what is missing before sending a search that cannot succeed', async () => {
    await page.getByRole('button', { name: 'Search' }).click();
    await expect
      .poll(() => page.locator('#error').textContent(), WAIT)
      .toContain('Describe the patients to search for.');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id), WAIT).toBe('query');
  });

  it('asks for the access token of a server started with one, and searches once it is given', async () => {
    const guarded = await createQueryServer({ service, port: 0, token: 'local-secret' });
    try {
      await page.goto(`${guarded.url}/`);
      await page.getByLabel('Patients to return').fill('3');
      await page.getByLabel('Describe the patients you are looking for').fill(QUERY);
      await page.getByLabel('Describe the patients you are looking for').press('Enter');
      await expect.poll(() => page.locator('#result-count').textContent(), WAIT).toBe('The search failed.');
      expect(await page.locator('#error').textContent()).toContain('needs an access token');
      // The settings open by themselves, so the token field is right there.
      expect(await page.locator('#settings').getAttribute('open')).not.toBeNull();
      await page.getByLabel('Access token').fill('local-secret');
      await page.getByRole('button', { name: 'Search' }).click();
      await expect.poll(() => page.locator('#result-count').textContent(), WAIT).toBe('3 patients found.');
      expect(await page.locator('#error').isVisible()).toBe(false);
    } finally {
      await guarded.close();
    }
  });
});
