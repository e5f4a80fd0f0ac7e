import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SECTION_CATEGORIES } from '@cohort/notes';
import { beforeAll, describe, expect, it } from 'vitest';

/** The pure helpers `web/app.js` exports (a plain ES module without types, so restated here). */
interface WebApp {
  SECTIONS: readonly string[];
  sectionLabel(category: unknown): string;
  splitList(text: unknown): string[];
  buildSearchBody(input: Record<string, unknown>): {
    body?: Record<string, unknown>;
    errors: { field: string; message: string }[];
  };
  highlightSegments(snippet: unknown, highlights: unknown): { text: string; mark: boolean }[];
  matchingNoteCount(patient: unknown): number;
  formatScore(score: unknown): string;
  formatNoteDate(date: unknown): string;
  assertionLabel(assertion: unknown): string;
  filenameFromDisposition(header: string | null, fallback: string): string;
  describeError(
    status: number,
    body: unknown,
  ): { message: string; fields: { field: string; message: string }[] };
  describeHealth(health: unknown): { text: string; fixture: boolean; ready: boolean };
  countLine(shown: number, total?: number): string;
}

const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
let app: WebApp;

beforeAll(async () => {
  // Under Node there is no `document`, so importing the page's module only defines its helpers.
  app = (await import(pathToFileURL(`${WEB}app.js`).href)) as WebApp;
});

describe('web page module', () => {
  it('offers the section categories of the notes layer, in its order', () => {
    expect(app.SECTIONS).toEqual([...SECTION_CATEGORIES]);
    expect(app.sectionLabel('history_of_present_illness')).toBe('History of present illness');
    expect(app.sectionLabel(undefined)).toBe('Unknown section');
  });

  it('builds the search body of the API with only the filters that are set', () => {
    expect(app.buildSearchBody({ query: '  afib after CABG ', k: '' })).toEqual({
      body: { query: 'afib after CABG', k: 50, assertion: 'affirmed' },
      errors: [],
    });
    const { body } = app.buildSearchBody({
      query: 'afib',
      k: '10',
      noteTypes: ' Discharge summary, Radiology report,, Discharge summary ',
      dateFrom: '2024-01-01',
      dateTo: '2024-12-31',
      sectionsInclude: ['hospital_course'],
      sectionsExclude: ['family_history'],
      assertion: 'any',
      minScore: '0.25',
    });
    expect(body).toEqual({
      query: 'afib',
      k: 10,
      assertion: 'any',
      minScore: 0.25,
      filters: {
        noteTypes: ['Discharge summary', 'Radiology report'],
        dateFrom: '2024-01-01',
        dateTo: '2024-12-31',
        sections: { include: ['hospital_course'], exclude: ['family_history'] },
      },
    });
  });

  it('names each field a search cannot be sent with', () => {
    const { body, errors } = app.buildSearchBody({
      query: ' ',
      k: '1001',
      dateFrom: '2024-02-01',
      dateTo: '2024-01-01',
      sectionsInclude: ['labs'],
      sectionsExclude: ['labs'],
      minScore: '2',
    });
    expect(body).toBeUndefined();
    expect(errors.map((e) => e.field)).toEqual(['query', 'k', 'dateTo', 'sectionsExclude', 'minScore']);
    expect(app.buildSearchBody({ query: 'x'.repeat(2001) }).errors[0]?.field).toBe('query');
    expect(app.buildSearchBody({ query: 'x', k: '2.5' }).errors[0]?.field).toBe('k');
  });

  it('cuts a snippet into plain and highlighted pieces, merging overlaps and clipping bad spans', () => {
    const text = 'No chest pain. New atrial fibrillation. On apixaban.';
    expect(app.highlightSegments(text, [[15, 39]])).toEqual([
      { text: 'No chest pain. ', mark: false },
      { text: 'New atrial fibrillation.', mark: true },
      { text: ' On apixaban.', mark: false },
    ]);
    expect(app.highlightSegments('abcdef', [[4, 99], [1, 3], [2, 4], [5, 5], [3, 1], 'x'])).toEqual([
      { text: 'a', mark: false },
      { text: 'bcdef', mark: true },
    ]);
    expect(app.highlightSegments('plain', undefined)).toEqual([{ text: 'plain', mark: false }]);
    expect(app.highlightSegments('', [[0, 3]])).toEqual([{ text: '', mark: false }]);
    const joined = (pieces: { text: string }[]) => pieces.map((p) => p.text).join('');
    expect(joined(app.highlightSegments(text, [[-5, 3]]))).toBe(text);
  });

  it('counts the distinct notes of a patient, or takes the count the API gives', () => {
    const evidence = [{ noteId: 'a' }, { noteId: 'b' }, { noteId: 'a' }];
    expect(app.matchingNoteCount({ evidence })).toBe(2);
    expect(app.matchingNoteCount({ evidence, matchingNotes: 7 })).toBe(7);
    expect(app.matchingNoteCount({})).toBe(0);
  });

  it('formats scores, dates, assertions and counts for people', () => {
    expect(app.formatScore(0.81234)).toBe('0.812');
    expect(app.formatScore(Number.NaN)).toBe('–');
    expect(app.formatNoteDate('2024-03-06T08:00:00Z')).toBe('2024-03-06');
    expect(app.formatNoteDate('March 2024')).toBe('March 2024');
    expect(app.formatNoteDate(null)).toBe('no date');
    expect(app.assertionLabel('negated')).toBe('negated');
    expect(app.assertionLabel(undefined)).toBe('not stated');
    expect(app.countLine(0)).toBe('No patients found.');
    expect(app.countLine(1)).toBe('1 patient found.');
    expect(app.countLine(50, 120)).toBe('Showing 50 of 120 patients found.');
  });

  it('takes a safe download name from Content-Disposition', () => {
    expect(app.filenameFromDisposition('attachment; filename="cohort-2024.csv"', 'x.csv')).toBe(
      'cohort-2024.csv',
    );
    expect(app.filenameFromDisposition("attachment; filename*=UTF-8''..%2Fetc%2Fpasswd", 'x')).toBe(
      '_etc_passwd',
    );
    expect(app.filenameFromDisposition(null, 'cohort.csv')).toBe('cohort.csv');
  });

  it("reads the API's error body and health answer", () => {
    expect(
      app.describeError(400, {
        error: {
          code: 'invalid_request',
          message: 'Invalid request',
          issues: [{ path: 'k', message: 'too big' }],
        },
      }),
    ).toEqual({ message: 'Invalid request', fields: [{ field: 'k', message: 'too big' }] });
    expect(app.describeError(401, undefined).message).toBe(
      'this server needs an access token. Enter it under “Server access”.',
    );
    expect(
      app.describeError(401, { error: { code: 'unauthorized', message: 'authentication required' } }).message,
    ).toBe('authentication required: this server needs an access token. Enter it under “Server access”.');
    expect(app.describeError(599, 'not json').message).toBe('The server answered with status 599.');

    const health = app.describeHealth({
      status: 'ok',
      container: 'warm',
      manifestVersion: 4,
      segments: 2,
      chunks: 12345,
      model: { fingerprint: 'sha256:0123456789abcdef0123456789', fixture: true },
      shards: 0,
    });
    expect(health).toEqual({
      text: 'Model sha256:0123456789ab… (tiny random fixture model) · index version 4 · 12,345 chunks · warm',
      fixture: true,
      ready: true,
    });
    const down = app.describeHealth({
      status: 'unavailable',
      container: 'cold',
      manifestVersion: 0,
      chunks: 0,
      model: { fingerprint: null },
      reason: 'no manifest',
    });
    expect(down.text).toBe('Model not loaded · no index yet · 0 chunks · cold · unavailable: no manifest');
    expect(down).toMatchObject({ fixture: false, ready: false });
  });
});

describe('web page files', () => {
  it('hold no inline script, style or event handler, so that the CSP default-src self allows them', async () => {
    const html = await readFile(`${WEB}index.html`, 'utf8');
    for (const script of html.matchAll(/<script\b[^>]*>/g)) expect(script[0]).toMatch(/\bsrc="[^":]+"/);
    expect(html).not.toMatch(/<style\b/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/\son[a-z]+=/);
    // Nothing from elsewhere: every src and href is same-origin.
    for (const ref of html.matchAll(/\s(?:src|href)="([^"]+)"/g))
      expect(ref[1]).not.toMatch(/^[a-z]+:|^\/\//i);
  });

  it('build the page from data with text nodes only (no innerHTML, no eval)', async () => {
    const js = await readFile(`${WEB}app.js`, 'utf8');
    expect(js).not.toMatch(
      /\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(/,
    );
  });

  it('give every form control a label', async () => {
    const html = await readFile(`${WEB}index.html`, 'utf8');
    const ids = [...html.matchAll(/<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"/g)].map((m) => m[1]);
    expect(ids.length).toBeGreaterThan(8);
    for (const id of ids) expect(html).toContain(`for="${id}"`);
  });

  it('pair text and background colours with WCAG AA contrast, and borders and focus with 3:1', async () => {
    const css = await readFile(`${WEB}app.css`, 'utf8');
    const colour = new Map([...css.matchAll(/--([a-z-]+):\s*(#[0-9a-f]{6});/gi)].map((m) => [m[1]!, m[2]!]));
    const luminance = (hex: string) => {
      const [r, g, b] = [1, 3, 5].map((i) => {
        const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const contrast = (a: string, b: string) => {
      const [hi, lo] = [luminance(colour.get(a)!), luminance(colour.get(b)!)].sort((x, y) => y - x);
      return (hi! + 0.05) / (lo! + 0.05);
    };
    const text: [string, string][] = [
      ['text', 'bg'],
      ['text', 'panel'],
      ['muted', 'bg'],
      ['muted', 'panel'],
      ['accent', 'bg'],
      ['accent', 'panel'],
      ['accent-text', 'accent'],
      ['mark-text', 'mark-bg'],
      ['warn-text', 'warn-bg'],
      ['error-text', 'error-bg'],
      ['ok-text', 'ok-bg'],
    ];
    for (const [fg, bg] of text) expect(contrast(fg, bg), `${fg} on ${bg}`).toBeGreaterThanOrEqual(4.5);
    const ui: [string, string][] = [
      ['focus', 'bg'],
      ['focus', 'panel'],
      ['border', 'bg'],
      ['warn-border', 'warn-bg'],
      ['error-border', 'error-bg'],
    ];
    for (const [fg, bg] of ui) expect(contrast(fg, bg), `${fg} on ${bg}`).toBeGreaterThanOrEqual(3);
  });
});
