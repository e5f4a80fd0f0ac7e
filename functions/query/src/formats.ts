/**
 * Export formats of a search answer: CSV (one row per patient with their top evidence) and a FHIR
 * R4 `Group` (an actual group of Patient references, the query in the description).
 */
import type { SearchRequest, SearchResponse } from './schemas.ts';

/** Columns of the CSV export, in order. */
export const CSV_COLUMNS = [
  'rank',
  'patientId',
  'score',
  'noteId',
  'noteType',
  'noteDate',
  'section',
  'assertion',
  'evidenceScore',
  'snippet',
] as const;

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A text starting with
 * `=`, `+`, `-`, `@`, tab or carriage return gets a leading apostrophe so that a spreadsheet shows it
 * instead of evaluating it as a formula (CSV injection); numbers are written as numbers.
 */
export function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value);
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** The CSV export: a header row, then one row per patient with their top evidence; CRLF line ends. */
export function toCsv(response: SearchResponse): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const m of response.cohort) {
    const e = m.evidence[0];
    rows.push(
      [
        m.rank,
        m.patientId,
        m.score,
        e?.noteId,
        e?.noteType,
        e?.noteDate,
        e?.section,
        e?.assertion,
        e?.score,
        e?.snippet?.replace(/\s+/g, ' ').trim(),
      ]
        .map(csvField)
        .join(','),
    );
  }
  return `${rows.join('\r\n')}\r\n`;
}

/** A FHIR R4 Group resource, as far as this export fills it. */
export interface FhirGroup {
  readonly resourceType: 'Group';
  readonly meta: {
    readonly profile?: readonly string[];
    readonly tag: readonly { system: string; code: string }[];
  };
  readonly type: 'person';
  readonly actual: true;
  readonly name: string;
  readonly description: string;
  readonly quantity: number;
  readonly member: readonly {
    readonly entity: { readonly reference: string };
    readonly inactive: false;
  }[];
  readonly extension: readonly { url: string; valueString?: string; valueInteger?: number }[];
}

/** Base URL of the extensions this export adds (search parameters, for reproducibility). */
export const FHIR_EXTENSION_BASE = 'urn:cohort-search:fhir:extension';

/**
 * The FHIR R4 Group export: `actual: true` (an enumerated set of patients), members as
 * `Patient/<id>` references in rank order, the query and its settings in the description, the
 * manifest version and model fingerprint as extensions so the cohort can be traced to its index.
 */
export function toFhirGroup(response: SearchResponse, request: SearchRequest): FhirGroup {
  const settings = [
    `assertion=${request.assertion}`,
    request.minScore === undefined ? `k=${request.k}` : `minScore=${request.minScore}`,
    request.filters ? `filters=${JSON.stringify(request.filters)}` : undefined,
  ].filter(Boolean);
  return {
    resourceType: 'Group',
    meta: { tag: [{ system: `${FHIR_EXTENSION_BASE}:source`, code: 'cohort-search' }] },
    type: 'person',
    actual: true,
    name: 'Semantic cohort search result',
    description: `Patients matching the query: ${request.query} (${settings.join('; ')})`,
    quantity: response.cohort.length,
    member: response.cohort.map((m) => ({
      entity: { reference: `Patient/${m.patientId}` },
      inactive: false,
    })),
    extension: [
      { url: `${FHIR_EXTENSION_BASE}:manifest-version`, valueInteger: response.index.manifestVersion },
      { url: `${FHIR_EXTENSION_BASE}:model-fingerprint`, valueString: response.model.fingerprint },
      { url: `${FHIR_EXTENSION_BASE}:total-patients`, valueInteger: response.totalPatients },
      ...(response.nextCursor
        ? [{ url: `${FHIR_EXTENSION_BASE}:next-cursor`, valueString: response.nextCursor }]
        : []),
    ],
  };
}
