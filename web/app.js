/**
 * The cohort search page: a plain ES module, no build step, no external assets.
 *
 * It talks only to the server it came from (the page is served with `Content-Security-Policy:
 * default-src 'self'`): `GET /v1/health` for the health line and the fixture-model banner, and
 * `POST /v1/search` for the cohort and its CSV and FHIR Group exports. Every piece of data from the
 * server reaches the page through `textContent` or DOM nodes built here, never through HTML
 * parsing, so a note that holds markup shows as text.
 *
 * The pure helpers are exported so that tests can import this file under Node; the page wires
 * itself up only where there is a `document`.
 */

/**
 * Section categories a filter can name, in the order of `SECTION_CATEGORIES` in
 * `layers/notes/src/types.ts` (a test checks that the two lists agree).
 */
export const SECTIONS = Object.freeze([
  'chief_complaint',
  'history_of_present_illness',
  'past_medical_history',
  'past_surgical_history',
  'family_history',
  'social_history',
  'review_of_systems',
  'medications',
  'allergies',
  'physical_exam',
  'hospital_course',
  'assessment_and_plan',
  'discharge_diagnosis',
  'discharge_medications',
  'discharge_instructions',
  'imaging',
  'labs',
  'other',
]);

/** Most patients one search may ask for (the API's limit on `k`). */
export const MAX_K = 1000;
/** Longest query the API takes, in characters. */
export const MAX_QUERY_CHARS = 2000;
/** Patients asked for when the field is left empty (the API's default). */
export const DEFAULT_K = 50;

const ABBREVIATIONS = { hpi: 'HPI' };

/** A person's name for a section category: `history_of_present_illness` → `History of present illness`. */
export function sectionLabel(category) {
  if (typeof category !== 'string' || category === '') return 'Unknown section';
  if (ABBREVIATIONS[category]) return ABBREVIATIONS[category];
  const words = category.replaceAll('_', ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Splits a comma-separated list typed by a person into trimmed, non-empty, distinct items. */
export function splitList(text) {
  const items = [];
  for (const part of String(text ?? '').split(',')) {
    const item = part.trim();
    if (item && !items.includes(item)) items.push(item);
  }
  return items;
}

/**
 * Validates what the form holds and builds the body of `POST /v1/search` (issue #6, §1): `query`,
 * `k`, `filters` (`noteTypes`, `dateFrom`, `dateTo`, `sections: { include, exclude }`),
 * `assertion` and, for exhaustive mode, `minScore`. Empty filters are left out, because the API rejects unknown fields and an empty list
 * would say "match nothing" rather than "no filter".
 * @param {{query?: string, k?: string|number, noteTypes?: string, dateFrom?: string, dateTo?: string,
 *   sectionsInclude?: string[], sectionsExclude?: string[], assertion?: string, minScore?: string}} input
 * @returns {{ body?: object, errors: {field: string, message: string}[] }}
 */
export function buildSearchBody(input) {
  const errors = [];
  const query = String(input.query ?? '').trim();
  if (query === '') errors.push({ field: 'query', message: 'Describe the patients to search for.' });
  else if (query.length > MAX_QUERY_CHARS)
    errors.push({ field: 'query', message: `The description is longer than ${MAX_QUERY_CHARS} characters.` });

  const kText = String(input.k ?? '').trim();
  const k = kText === '' ? DEFAULT_K : Number(kText);
  if (!Number.isInteger(k) || k < 1 || k > MAX_K)
    errors.push({ field: 'k', message: `Patients to return must be a whole number from 1 to ${MAX_K}.` });

  const filters = {};
  const noteTypes = splitList(input.noteTypes);
  if (noteTypes.length) filters.noteTypes = noteTypes;
  const dateFrom = String(input.dateFrom ?? '').trim();
  const dateTo = String(input.dateTo ?? '').trim();
  if (dateFrom) filters.dateFrom = dateFrom;
  if (dateTo) filters.dateTo = dateTo;
  if (dateFrom && dateTo && dateFrom > dateTo)
    errors.push({ field: 'dateTo', message: 'The end date comes before the start date.' });
  const include = [...(input.sectionsInclude ?? [])];
  const exclude = [...(input.sectionsExclude ?? [])];
  if (include.some((s) => exclude.includes(s)))
    errors.push({ field: 'sectionsExclude', message: 'A section cannot be both included and left out.' });
  if (include.length || exclude.length) {
    filters.sections = {};
    if (include.length) filters.sections.include = include;
    if (exclude.length) filters.sections.exclude = exclude;
  }

  const assertion = input.assertion === 'any' ? 'any' : 'affirmed';
  const minScoreText = String(input.minScore ?? '').trim();
  const minScore = minScoreText === '' ? undefined : Number(minScoreText);
  if (minScore !== undefined && !(Number.isFinite(minScore) && minScore >= -1 && minScore <= 1))
    errors.push({ field: 'minScore', message: 'The minimum score must be a number from -1 to 1.' });
  if (errors.length) return { errors };
  const body = { query, k, assertion };
  if (Object.keys(filters).length) body.filters = filters;
  if (minScore !== undefined) body.minScore = minScore;
  return { body, errors };
}

/**
 * Cuts a snippet into plain and highlighted pieces. `highlights` are `[start, end)` offsets into
 * the snippet (UTF-16 code units, as JavaScript indexes strings); out-of-range, empty or reversed
 * spans are clipped or dropped and overlapping ones merged, so a bad span never hides text.
 * @param {string} snippet
 * @param {unknown} highlights
 * @returns {{ text: string, mark: boolean }[]}
 */
export function highlightSegments(snippet, highlights) {
  const text = String(snippet ?? '');
  const spans = [];
  if (Array.isArray(highlights)) {
    for (const h of highlights) {
      if (!Array.isArray(h) || h.length < 2) continue;
      const start = Math.max(0, Math.min(text.length, Math.trunc(Number(h[0]))));
      const end = Math.max(0, Math.min(text.length, Math.trunc(Number(h[1]))));
      if (Number.isFinite(start) && Number.isFinite(end) && end > start) spans.push([start, end]);
    }
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const span of spans) {
    const last = merged[merged.length - 1];
    if (last && span[0] <= last[1]) last[1] = Math.max(last[1], span[1]);
    else merged.push([...span]);
  }
  const pieces = [];
  let at = 0;
  for (const [start, end] of merged) {
    if (start > at) pieces.push({ text: text.slice(at, start), mark: false });
    pieces.push({ text: text.slice(start, end), mark: true });
    at = end;
  }
  if (at < text.length || pieces.length === 0) pieces.push({ text: text.slice(at), mark: false });
  return pieces;
}

/** The number of distinct notes among a patient's evidence (or the count the API gives, when it gives one). */
export function matchingNoteCount(patient) {
  if (Number.isInteger(patient?.matchingNotes)) return patient.matchingNotes;
  const ids = new Set();
  for (const e of patient?.evidence ?? []) ids.add(e?.noteId);
  return ids.size;
}

/** A score with three decimals, or a dash when there is none. */
export function formatScore(score) {
  return typeof score === 'number' && Number.isFinite(score) ? score.toFixed(3) : '–';
}

/** A note date as a person reads it: the day of an ISO date-time, or the text as given. */
export function formatNoteDate(date) {
  if (typeof date !== 'string' || date === '') return 'no date';
  return /^\d{4}-\d{2}-\d{2}(T|$)/.test(date) ? date.slice(0, 10) : date;
}

/** How an evidence's assertion status reads: `affirmed`, `negated`, … (several joined with commas). */
export function assertionLabel(assertion) {
  if (Array.isArray(assertion)) return assertion.length ? assertion.map(String).join(', ') : 'affirmed';
  if (typeof assertion === 'string' && assertion !== '') return assertion;
  return 'not stated';
}

/** A file name from a `Content-Disposition` header, reduced to safe characters, else `fallback`. */
export function filenameFromDisposition(header, fallback) {
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(header ?? '');
  if (!match?.[1]) return fallback;
  let name = match[1];
  try {
    name = decodeURIComponent(name);
  } catch {
    // Not percent-encoded: keep it as it is.
  }
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '');
  return safe || fallback;
}

/**
 * One sentence for a failed request: the API's message when its JSON body has one, field messages
 * appended, else a sentence for the status code.
 * @returns {{ message: string, fields: {field: string, message: string}[] }}
 */
export function describeError(status, body) {
  const err = body && typeof body === 'object' ? (body.error ?? body) : undefined;
  let message = typeof err === 'string' ? err : typeof err?.message === 'string' ? err.message : undefined;
  const fields = [];
  // The API's error body: `{ error: { code, message, issues?: [{ path, message }] } }`.
  const rawFields = typeof err === 'object' ? (err.issues ?? err.fields) : undefined;
  if (Array.isArray(rawFields)) {
    for (const f of rawFields) {
      if (!f || typeof f !== 'object') continue;
      const path = Array.isArray(f.path) ? f.path.join('.') : (f.path ?? '');
      fields.push({ field: String(path), message: String(f.message ?? '') });
    }
  }
  if (status === 401) {
    // Whatever the server says, the person needs to know where the token goes.
    message = `${message ? `${message}: ` : ''}this server needs an access token. Enter it under “Server access”.`;
  }
  if (!message) {
    message =
      {
        400: 'The server did not accept the search.',
        403: 'This access token may not search.',
        404: 'The server does not know this address.',
        413: 'The request is too large.',
        429: 'Too many searches at once; wait a moment and try again.',
        503: 'The index is not available yet.',
      }[status] ?? `The server answered with status ${status}.`;
  }
  return { message, fields };
}

/**
 * What the health line says, from the answer of `GET /v1/health` (`{ status, container,
 * manifestVersion, segments, chunks, model: { fingerprint, fixture? }, reason? }`) or from a search
 * answer's `model` and `index`: model fingerprint, index manifest version, chunk count, warm or
 * cold; whether the fixture model is in use (`model.fixture: true`); and why the index is
 * unavailable, when it is.
 * @returns {{ text: string, fixture: boolean, ready: boolean }}
 */
export function describeHealth(health) {
  const h = health && typeof health === 'object' ? health : {};
  const model = h.model && typeof h.model === 'object' ? h.model : {};
  const index = h.index && typeof h.index === 'object' ? h.index : {};
  const fingerprint = model.fingerprint;
  const version = index.manifestVersion ?? h.manifestVersion;
  const chunks = index.chunks ?? h.chunks;
  const fixture = model.fixture === true;
  const parts = [];
  parts.push(`Model ${typeof fingerprint === 'string' ? shortFingerprint(fingerprint) : 'not loaded'}`);
  if (fixture) parts[0] += ' (tiny random fixture model)';
  const hasIndex = typeof version === 'number' && version > 0;
  parts.push(hasIndex ? `index version ${version}` : 'no index yet');
  if (typeof chunks === 'number') parts.push(`${chunks.toLocaleString('en-US')} chunks`);
  if (h.container === 'warm' || h.container === 'cold') parts.push(h.container);
  const unavailable = h.status === 'unavailable';
  if (unavailable) parts.push(`unavailable${typeof h.reason === 'string' ? `: ${h.reason}` : ''}`);
  return { text: parts.join(' · '), fixture, ready: hasIndex && !unavailable };
}

function shortFingerprint(fingerprint) {
  // Long hashes are for machines; the first 12 characters tell models apart on screen.
  const [algo, hash] = fingerprint.includes(':') ? fingerprint.split(':', 2) : ['', fingerprint];
  const short = hash.length > 12 ? `${hash.slice(0, 12)}…` : hash;
  return algo ? `${algo}:${short}` : short;
}

/** "1 patient", "12 patients": the count line for the live region. */
export function countLine(shown, total) {
  const noun = (n) => (n === 1 ? 'patient' : 'patients');
  if (typeof total === 'number' && total > shown) return `Showing ${shown} of ${total} ${noun(total)} found.`;
  return shown === 0 ? 'No patients found.' : `${shown} ${noun(shown)} found.`;
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

const TOKEN_KEY = 'cohort-search-token';

function init() {
  const $ = (id) => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`page element #${id} is missing`);
    return el;
  };
  const form = $('search-form');
  const queryInput = $('query');
  const searchButton = $('search-button');
  const kInput = $('k');
  const noteTypesInput = $('note-types');
  const dateFromInput = $('date-from');
  const dateToInput = $('date-to');
  const minScoreInput = $('min-score');
  const includeSelect = $('sections-include');
  const excludeSelect = $('sections-exclude');
  const tokenInput = $('token');
  const settings = $('settings');
  const errorBox = $('error');
  const results = $('results');
  const resultCount = $('result-count');
  const table = $('cohort');
  const tbody = $('cohort-body');
  const loadMore = $('load-more');
  const exportCsv = $('export-csv');
  const exportFhir = $('export-fhir');
  const healthLine = $('health');
  const banner = $('fixture-banner');

  for (const select of [includeSelect, excludeSelect]) {
    for (const category of SECTIONS) {
      const option = document.createElement('option');
      option.value = category;
      option.textContent = sectionLabel(category);
      select.append(option);
    }
  }

  try {
    tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    // Storage may be off (private mode): the token then lives in the field only.
  }
  tokenInput.addEventListener('change', () => {
    try {
      if (tokenInput.value) sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // As above.
    }
  });

  /** The body of the last search that succeeded: exports and "load more" repeat it. */
  let lastBody;
  let nextCursor;
  let shown = 0;
  let busy = false;

  const headers = (json) => {
    const h = { Accept: json ? 'application/json' : '*/*' };
    if (json) h['Content-Type'] = 'application/json';
    if (tokenInput.value) h.Authorization = `Bearer ${tokenInput.value}`;
    return h;
  };

  const readJson = async (response) => {
    try {
      return await response.json();
    } catch {
      return undefined;
    }
  };

  const clearFieldErrors = () => {
    for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  };

  const showError = (message, fields = []) => {
    errorBox.replaceChildren();
    const p = document.createElement('p');
    p.textContent = message;
    errorBox.append(p);
    if (fields.length) {
      const list = document.createElement('ul');
      for (const f of fields) {
        const li = document.createElement('li');
        li.textContent = f.field ? `${f.field}: ${f.message}` : f.message;
        list.append(li);
        const input = fieldElement(f.field);
        if (input) input.setAttribute('aria-invalid', 'true');
      }
      errorBox.append(list);
    }
    errorBox.hidden = false;
  };

  const hideError = () => {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    clearFieldErrors();
  };

  const fieldElement = (field) => {
    const key = String(field).split('.').pop();
    return (
      {
        query: queryInput,
        k: kInput,
        noteTypes: noteTypesInput,
        dateFrom: dateFromInput,
        dateTo: dateToInput,
        minScore: minScoreInput,
        include: includeSelect,
        sectionsInclude: includeSelect,
        exclude: excludeSelect,
        sectionsExclude: excludeSelect,
      }[key] ?? null
    );
  };

  const setBusy = (on) => {
    busy = on;
    results.setAttribute('aria-busy', on ? 'true' : 'false');
    searchButton.disabled = on;
    loadMore.disabled = on;
  };

  const refreshHealth = async () => {
    try {
      const response = await fetch('/v1/health', { headers: headers(false) });
      const body = await readJson(response);
      if (!response.ok && body?.status !== 'unavailable') {
        healthLine.textContent = `Server not ready: ${describeError(response.status, body).message}`;
        return;
      }
      const health = describeHealth(body);
      healthLine.textContent = health.text;
      banner.hidden = !health.fixture;
    } catch {
      healthLine.textContent = 'The server cannot be reached.';
    }
  };

  const renderEvidence = (patient, cell) => {
    const list = document.createElement('ol');
    list.className = 'evidence-list';
    const evidence = Array.isArray(patient.evidence) ? patient.evidence : [];
    if (evidence.length === 0) {
      const p = document.createElement('p');
      p.textContent = 'No evidence was returned for this patient.';
      cell.append(p);
      return;
    }
    for (const e of evidence) {
      const item = document.createElement('li');
      item.className = 'evidence';
      const meta = document.createElement('p');
      meta.className = 'evidence-meta';
      const add = (cls, label, value) => {
        const span = document.createElement('span');
        span.className = cls;
        const hidden = document.createElement('span');
        hidden.className = 'visually-hidden';
        hidden.textContent = `${label}: `;
        span.append(hidden, value);
        meta.append(span);
      };
      add('note-type', 'Note type', e.noteType || 'Note');
      add('note-date', 'Date', formatNoteDate(e.noteDate));
      add('section', 'Section', sectionLabel(e.section));
      const assertion = assertionLabel(e.assertion);
      const badge = document.createElement('span');
      badge.className = `badge assertion-${assertion.replace(/[^a-z]/g, '-')}`;
      badge.textContent = assertion;
      const assertionWrap = document.createElement('span');
      assertionWrap.className = 'assertion';
      const assertionLabelEl = document.createElement('span');
      assertionLabelEl.className = 'visually-hidden';
      assertionLabelEl.textContent = 'Assertion: ';
      assertionWrap.append(assertionLabelEl, badge);
      meta.append(assertionWrap);
      add('evidence-score', 'Score', formatScore(e.score));
      const snippet = document.createElement('blockquote');
      snippet.className = 'snippet';
      if (typeof e.snippet !== 'string') {
        snippet.classList.add('no-text');
        snippet.textContent = 'The note text is not stored with this index, so no snippet can be shown.';
      }
      for (const piece of typeof e.snippet === 'string' ? highlightSegments(e.snippet, e.highlights) : []) {
        if (piece.mark) {
          const mark = document.createElement('mark');
          mark.textContent = piece.text;
          snippet.append(mark);
        } else {
          snippet.append(document.createTextNode(piece.text));
        }
      }
      const note = document.createElement('p');
      note.className = 'note-id';
      note.textContent = `Note ${e.noteId ?? 'unknown'}`;
      item.append(meta, snippet, note);
      list.append(item);
    }
    cell.append(list);
  };

  const appendPatients = (cohort) => {
    for (const patient of cohort) {
      const index = shown++;
      const row = document.createElement('tr');
      row.className = 'patient-row';
      const rank = document.createElement('td');
      rank.className = 'num';
      rank.textContent = String(patient.rank ?? index + 1);
      const id = document.createElement('th');
      id.scope = 'row';
      id.className = 'patient-id';
      id.textContent = String(patient.patientId ?? '');
      const score = document.createElement('td');
      score.className = 'num';
      score.textContent = formatScore(patient.score);
      const notes = document.createElement('td');
      notes.className = 'num';
      notes.textContent = String(matchingNoteCount(patient));
      const actions = document.createElement('td');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'expand';
      const detailId = `evidence-${index}`;
      button.setAttribute('aria-expanded', 'false');
      button.setAttribute('aria-controls', detailId);
      const label = document.createElement('span');
      label.className = 'expand-label';
      label.textContent = 'Show evidence';
      const who = document.createElement('span');
      who.className = 'visually-hidden';
      who.textContent = ` for patient ${patient.patientId ?? ''}`;
      button.append(label, who);
      actions.append(button);
      row.append(rank, id, score, notes, actions);

      const detail = document.createElement('tr');
      detail.className = 'evidence-row';
      detail.id = detailId;
      detail.hidden = true;
      const cell = document.createElement('td');
      cell.colSpan = 5;
      detail.append(cell);
      let rendered = false;
      button.addEventListener('click', () => {
        const open = button.getAttribute('aria-expanded') !== 'true';
        if (open && !rendered) {
          renderEvidence(patient, cell);
          rendered = true;
        }
        button.setAttribute('aria-expanded', String(open));
        label.textContent = open ? 'Hide evidence' : 'Show evidence';
        detail.hidden = !open;
      });
      tbody.append(row, detail);
    }
  };

  // Arrow keys move between the rows' evidence buttons, Home and End to the first and last.
  tbody.addEventListener('keydown', (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement) || !target.classList.contains('expand')) return;
    const buttons = [...tbody.querySelectorAll('button.expand')];
    const at = buttons.indexOf(target);
    let to;
    if (event.key === 'ArrowDown') to = at + 1;
    else if (event.key === 'ArrowUp') to = at - 1;
    else if (event.key === 'Home') to = 0;
    else if (event.key === 'End') to = buttons.length - 1;
    else return;
    const next = buttons[Math.max(0, Math.min(buttons.length - 1, to))];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  });

  const post = (body) =>
    fetch('/v1/search', { method: 'POST', headers: headers(true), body: JSON.stringify(body) });

  const search = async (body, append) => {
    setBusy(true);
    hideError();
    if (!append) resultCount.textContent = 'Searching…';
    try {
      const response = await post(body);
      const answer = await readJson(response);
      if (!response.ok) {
        const { message, fields } = describeError(response.status, answer);
        showError(message, fields);
        resultCount.textContent = 'The search failed.';
        if (response.status === 401) {
          settings.open = true;
          tokenInput.setAttribute('aria-invalid', 'true');
        }
        return;
      }
      const cohort = Array.isArray(answer?.cohort) ? answer.cohort : [];
      if (!append) {
        tbody.replaceChildren();
        shown = 0;
      }
      lastBody = { ...body };
      delete lastBody.cursor;
      appendPatients(cohort);
      nextCursor = typeof answer?.nextCursor === 'string' ? answer.nextCursor : undefined;
      loadMore.hidden = nextCursor === undefined;
      table.hidden = shown === 0;
      exportCsv.disabled = exportFhir.disabled = false;
      resultCount.textContent = countLine(shown, answer?.totalPatients);
      if (answer?.model || answer?.index) {
        const health = describeHealth({ ...answer, model: { ...answer.model, fixture: !banner.hidden } });
        healthLine.textContent = health.text;
      }
    } catch {
      showError('The server cannot be reached. Is `cohort start` still running?');
      resultCount.textContent = 'The search failed.';
    } finally {
      setBusy(false);
    }
  };

  const readForm = () => ({
    query: queryInput.value,
    k: kInput.value,
    noteTypes: noteTypesInput.value,
    dateFrom: dateFromInput.value,
    dateTo: dateToInput.value,
    sectionsInclude: [...includeSelect.selectedOptions].map((o) => o.value),
    sectionsExclude: [...excludeSelect.selectedOptions].map((o) => o.value),
    assertion: form.elements.namedItem('assertion')?.value,
    minScore: minScoreInput.value,
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (busy) return;
    const { body, errors } = buildSearchBody(readForm());
    if (!body) {
      hideError();
      showError('Please correct the search:', errors);
      const first = fieldElement(errors[0]?.field ?? '');
      first?.focus();
      return;
    }
    void search(body, false);
  });

  loadMore.addEventListener('click', () => {
    if (busy || !lastBody || !nextCursor) return;
    void search({ ...lastBody, cursor: nextCursor }, true);
  });

  $('reset-filters').addEventListener('click', () => {
    noteTypesInput.value = '';
    dateFromInput.value = '';
    dateToInput.value = '';
    kInput.value = String(DEFAULT_K);
    minScoreInput.value = '';
    for (const select of [includeSelect, excludeSelect]) for (const o of select.options) o.selected = false;
    const affirmed = document.getElementById('assertion-affirmed');
    if (affirmed) affirmed.checked = true;
    clearFieldErrors();
  });

  const download = async (format, fallbackName, button) => {
    if (!lastBody) return;
    button.disabled = true;
    hideError();
    try {
      const response = await post({ ...lastBody, format });
      if (!response.ok) {
        const { message, fields } = describeError(response.status, await readJson(response));
        showError(message, fields);
        return;
      }
      const blob = await response.blob();
      const name = filenameFromDisposition(response.headers.get('Content-Disposition'), fallbackName);
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = name;
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      // The download has its own copy once it starts; revoking later frees the blob.
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      resultCount.textContent = `${countLine(shown)} Downloaded ${name}.`;
    } catch {
      showError('The export failed: the server cannot be reached.');
    } finally {
      button.disabled = false;
    }
  };

  exportCsv.addEventListener('click', () => void download('csv', 'cohort.csv', exportCsv));
  exportFhir.addEventListener('click', () => void download('fhir-group', 'cohort-group.json', exportFhir));

  void refreshHealth();
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}
