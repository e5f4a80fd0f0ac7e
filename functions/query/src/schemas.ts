/**
 * The API's request and response shapes as zod schemas: the single source of the validation, the
 * TypeScript types and the OpenAPI document (`openapi.ts`). Objects are strict (an unknown field is
 * a 400, so a typo such as `minscore` never silently changes a cohort) and every string and list
 * has a size limit.
 */
import { z } from 'zod';

/** The registry of the API's named schemas, from which `openapi.ts` builds the document. */
export const apiRegistry = z.registry<{ id: string }>();

/** Limits of a search request. */
export const LIMITS = {
  /** Longest query, in characters. */
  queryChars: 2000,
  /** Most patients per answer (or per page in exhaustive mode). */
  maxK: 1000,
  /** Patients per answer when `k` is not given. */
  defaultK: 50,
  /** Most evidence chunks per patient. */
  maxEvidence: 10,
  /** Evidence chunks per patient when `evidence` is not given. */
  defaultEvidence: 3,
  /** Most entries in one filter list (`noteTypes`, `sections.include`, …). */
  listItems: 100,
  /** Most entries in `filters.patientIds`. */
  patientIds: 1000,
  /** Longest identifier or filter value, in characters. */
  idChars: 256,
  /** Longest cursor, in characters. */
  cursorChars: 512,
  /** Largest request body, in bytes. */
  bodyBytes: 64 * 1024,
} as const;

/**
 * A string that is well-formed UTF-16 (no lone surrogate, which the tokenizer cannot encode) and
 * holds no NUL or other C0 control character except tab, line feed and carriage return.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const cleanText = (max: number, min = 1) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !LONE_SURROGATE.test(s), { message: 'contains a lone surrogate (not valid Unicode)' })
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to refuse them
    .refine((s) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s), {
      message: 'contains a control character',
    });

const id = cleanText(LIMITS.idChars);
const idList = (max: number) => z.array(id).max(max);

/** Whether an ISO 8601 date or date-time names a real day and time (no 30 February, no 25:00). */
function isRealDate(s: string): boolean {
  const [y, m, d] = [Number(s.slice(0, 4)), Number(s.slice(5, 7)), Number(s.slice(8, 10))];
  const day = new Date(Date.UTC(2000, m - 1, d));
  // Set the year on its own: Date.UTC maps years 0 to 99 to 1900 to 1999.
  day.setUTCFullYear(y, m - 1, d);
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== m - 1 || day.getUTCDate() !== d) return false;
  if (s.length === 10) return true;
  const [hh, mm, ss] = [Number(s.slice(11, 13)), Number(s.slice(14, 16)), Number(s.slice(17, 19) || 0)];
  return hh <= 23 && mm <= 59 && ss <= 59 && !Number.isNaN(Date.parse(s));
}

/** ISO 8601 calendar date, or date-time (compared as strings with the notes' dates). */
const isoDate = z
  .string()
  .max(40)
  .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/, {
    message: 'expected an ISO 8601 date (YYYY-MM-DD) or date-time',
  })
  .refine(isRealDate, { message: 'not a real date' });

/** Metadata filters: every given field must hold (AND); an empty list is ignored. */
export const SearchFiltersSchema = z
  .strictObject({
    noteTypes: idList(LIMITS.listItems).optional().describe('keep notes of these types'),
    dateFrom: isoDate
      .optional()
      .describe('keep notes dated on or after this date (notes without a date drop)'),
    dateTo: isoDate
      .optional()
      .describe('keep notes dated on or before this date, inclusive at its precision'),
    sections: z
      .strictObject({
        include: idList(LIMITS.listItems).optional().describe('keep chunks of these section categories only'),
        exclude: idList(LIMITS.listItems).optional().describe('drop chunks of these section categories'),
      })
      .optional(),
    patientIds: idList(LIMITS.patientIds).optional().describe('keep these patients only'),
  })
  // dateTo is inclusive at its own precision (the index compares a note date cut to its length), so
  // dateFrom is compared at that precision too: 2020-01-01T10:00Z to 2020-01-01 is a valid range.
  .refine(
    (f) =>
      f.dateFrom === undefined || f.dateTo === undefined || f.dateFrom.slice(0, f.dateTo.length) <= f.dateTo,
    {
      message: 'dateFrom is after dateTo',
      path: ['dateFrom'],
    },
  )
  .register(apiRegistry, { id: 'SearchFilters' });

/** Export formats of a search answer. */
export const FORMATS = ['json', 'csv', 'fhir-group'] as const;
/** How assertion scopes count: `affirmed` drops negated, hypothetical and family evidence; `any` keeps all. */
export const ASSERTION_MODES = ['affirmed', 'any'] as const;

/** The body of `POST /v1/search`. */
export const SearchRequestSchema = z
  .strictObject({
    query: cleanText(LIMITS.queryChars)
      .refine((s) => s.trim().length > 0, { message: 'is blank' })
      .describe('the patients to find, in words'),
    k: z
      .int()
      .min(1)
      .max(LIMITS.maxK)
      .default(LIMITS.defaultK)
      .describe('patients to return (per page in exhaustive mode)'),
    filters: SearchFiltersSchema.optional(),
    assertion: z
      .enum(ASSERTION_MODES)
      .default('affirmed')
      .describe(
        'affirmed: evidence mostly inside a negated, hypothetical or family scope does not count; any: it does',
      ),
    minScore: z
      .number()
      .min(-1)
      .max(1)
      .optional()
      .describe('exhaustive mode: every patient whose score is at least this, paginated by cursor'),
    cursor: z
      .string()
      .min(1)
      .max(LIMITS.cursorChars)
      .regex(/^[A-Za-z0-9_-]+$/, { message: 'not a cursor from this API' })
      .optional()
      .describe('nextCursor of the previous page (exhaustive mode)'),
    format: z
      .enum(FORMATS)
      .default('json')
      .describe('json, csv (one row per patient) or fhir-group (R4 Group)'),
    evidence: z
      .int()
      .min(1)
      .max(LIMITS.maxEvidence)
      .default(LIMITS.defaultEvidence)
      .describe('evidence chunks per patient'),
  })
  .refine((r) => r.cursor === undefined || r.minScore !== undefined, {
    message: 'a cursor pages an exhaustive search: give minScore too',
    path: ['cursor'],
  })
  .register(apiRegistry, { id: 'SearchRequest' });

/** A validated search request, defaults applied. */
export type SearchRequest = z.output<typeof SearchRequestSchema>;
/** A search request as a client may send it. */
export type SearchRequestInput = z.input<typeof SearchRequestSchema>;
/** Validated filters. */
export type SearchFilters = z.output<typeof SearchFiltersSchema>;

/** What an evidence chunk's text asserts, from the note's ConText scopes. */
export const EvidenceAssertionSchema = z.enum([
  'affirmed',
  'negated',
  'hypothetical',
  'historical',
  'family',
]);

/** One chunk that put a patient in the cohort. */
export const EvidenceSchema = z
  .object({
    noteId: z.string(),
    noteType: z.string().nullable(),
    noteDate: z.string().nullable(),
    section: z.string(),
    score: z.number().describe('cosine similarity of the chunk to the query'),
    snippet: z.string().nullable().describe("the chunk's text; null when the note text is not stored"),
    highlights: z
      .array(z.tuple([z.int(), z.int()]))
      .describe('[start, end) of the best-matching sentence, offsets into the snippet'),
    assertion: EvidenceAssertionSchema,
  })
  .register(apiRegistry, { id: 'Evidence' });

/** One patient of the cohort. */
export const CohortMemberSchema = z
  .object({
    patientId: z.string(),
    score: z.number().describe("the patient's best chunk score (see README: patient score)"),
    rank: z.int().min(1),
    matchingNotes: z
      .int()
      .min(1)
      .describe(
        'distinct notes among the chunks the search retrieved for this patient (exhaustive mode: every note with a chunk at or above minScore)',
      ),
    evidence: z.array(EvidenceSchema),
  })
  .register(apiRegistry, { id: 'CohortMember' });

/** The JSON answer of `POST /v1/search`. */
export const SearchResponseSchema = z
  .object({
    cohort: z.array(CohortMemberSchema),
    totalPatients: z
      .int()
      .describe('exhaustive mode: patients above minScore over all pages; top-k mode: patients returned'),
    nextCursor: z.string().optional(),
    model: z.object({ fingerprint: z.string() }),
    index: z.object({ manifestVersion: z.int(), chunks: z.int() }),
    timings: z
      .object({
        encodeMs: z.number(),
        searchMs: z.number(),
        evidenceMs: z.number().describe('evidence snippets, and the audit record written meanwhile'),
        totalMs: z.number(),
      })
      .describe('server-side milliseconds per stage'),
  })
  .register(apiRegistry, { id: 'SearchResponse' });

/** The JSON answer of `POST /v1/search`. */
export type SearchResponse = z.output<typeof SearchResponseSchema>;
/** One patient of a {@link SearchResponse}. */
export type CohortMember = z.output<typeof CohortMemberSchema>;
/** One evidence chunk of a {@link CohortMember}. */
export type Evidence = z.output<typeof EvidenceSchema>;

/** The answer of `GET /v1/health`. */
export const HealthResponseSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    container: z.enum(['warm', 'cold']).describe('cold until this process has answered its first search'),
    manifestVersion: z.int(),
    segments: z.int(),
    chunks: z.int(),
    model: z.object({
      fingerprint: z.string().nullable(),
      fixture: z
        .boolean()
        .optional()
        .describe('true when the tiny random fixture model is loaded: its rankings are meaningless'),
    }),
    shards: z.int().describe('shard functions searched (0: the segments are in this process)'),
    reason: z.string().optional().describe('why the index is unavailable'),
  })
  .register(apiRegistry, { id: 'HealthResponse' });

/** The answer of `GET /v1/health`. */
export type HealthResponse = z.output<typeof HealthResponseSchema>;

/** Every error body. */
export const ErrorResponseSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .register(apiRegistry, { id: 'ErrorResponse' });
