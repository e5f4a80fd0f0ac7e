/**
 * From chunk hits to a ranked cohort.
 *
 * Patient score: the score of the patient's best chunk (the maximum cosine similarity over their
 * live, matching chunks). Ties are broken by the best chunk of their second-best note, then of their
 * third-best note, then by patient id. Why the maximum and not a sum or mean:
 * - cohort membership is an existence question ("does this patient have evidence of X?"), and one
 *   clear mention in one note is enough; a mean would punish patients whose other notes are about
 *   other things, which is almost every patient;
 * - a sum (or any count-based boost) favours patients with many notes (long stays, many
 *   admissions), a length bias unrelated to the query; the max-passage rule is also what works best
 *   for ranking long documents by passage-level BERT scores (Dai and Callan, SIGIR 2019, "MaxP");
 * - the maximum is a calibrated cosine, so `minScore` has one meaning: a patient is in the
 *   exhaustive cohort exactly when one of their chunks scores at least `minScore`;
 * - corroboration by other notes still counts, but only to order patients whose best chunks tie.
 */
import { createHash } from 'node:crypto';
import { InvalidCursorError } from './errors.ts';
import type { SearchRequest } from './schemas.ts';
import type { ChunkHit } from './searcher.ts';

/** One patient and their hits, best first. */
export interface PatientGroup {
  readonly patientId: string;
  /** The patient score: their best chunk's score. */
  readonly score: number;
  /** Best chunk score of each distinct note, best first (the tie-breakers). */
  readonly noteScores: readonly number[];
  /** Their hits, best first. */
  readonly hits: readonly ChunkHit[];
}

/** Orders patients: score, then the second and third notes' best scores, then patient id. */
export function comparePatients(a: PatientGroup, b: PatientGroup): number {
  for (let i = 0; i < 3; i++) {
    const x = a.noteScores[i] ?? Number.NEGATIVE_INFINITY;
    const y = b.noteScores[i] ?? Number.NEGATIVE_INFINITY;
    if (x !== y) return y - x;
  }
  return a.patientId < b.patientId ? -1 : a.patientId > b.patientId ? 1 : 0;
}

/** Groups hits (best first) by patient and ranks the patients (see the module comment). */
export function groupByPatient(hits: readonly ChunkHit[]): PatientGroup[] {
  const byPatient = new Map<string, ChunkHit[]>();
  for (const h of hits) {
    const list = byPatient.get(h.chunk.patientId);
    if (list) list.push(h);
    else byPatient.set(h.chunk.patientId, [h]);
  }
  const groups: PatientGroup[] = [];
  for (const [patientId, list] of byPatient) {
    list.sort((a, b) => b.score - a.score);
    const notes = new Map<string, number>();
    for (const h of list) if (!notes.has(h.chunk.noteId)) notes.set(h.chunk.noteId, h.score);
    groups.push({ patientId, score: list[0]!.score, noteScores: [...notes.values()], hits: list });
  }
  return groups.sort(comparePatients);
}

/** What a cursor holds: which search it pages, on which manifest, and where the next page starts. */
export interface CursorState {
  /** Hash of the request fields that define the cohort (query, filters, assertion, minScore). */
  readonly h: string;
  /** Manifest version of the first page. */
  readonly v: number;
  /** Patients already returned. */
  readonly o: number;
}

/**
 * The hash that ties a cursor to its search: over the fields that decide who is in the cohort, so
 * a client may change `k`, `format` or `evidence` between pages but not the cohort itself.
 */
export function cohortHash(request: SearchRequest): string {
  const canonical = JSON.stringify([
    request.query,
    request.filters ?? null,
    request.assertion,
    request.minScore,
  ]);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 22);
}

/** Encodes a cursor (base64url JSON: opaque to clients, not a secret). */
export function encodeCursor(state: CursorState): string {
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

/**
 * Decodes a cursor and checks it belongs to `request`.
 * @throws InvalidCursorError when it is malformed or was issued for another search
 */
export function decodeCursor(cursor: string, request: SearchRequest): CursorState {
  let state: unknown;
  try {
    state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new InvalidCursorError('the cursor is malformed', { cause });
  }
  const s = state as Partial<CursorState> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.h !== 'string' ||
    !Number.isSafeInteger(s.v) ||
    !Number.isSafeInteger(s.o) ||
    (s.o as number) < 0 ||
    (s.v as number) < 0
  ) {
    throw new InvalidCursorError('the cursor is malformed');
  }
  if (s.h !== cohortHash(request)) {
    throw new InvalidCursorError(
      'the cursor belongs to another search (query, filters, assertion or minScore differ)',
    );
  }
  return s as CursorState;
}
