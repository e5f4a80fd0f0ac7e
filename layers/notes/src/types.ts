/** Where a note came from: the object, and the row or line within it for multi-record files. */
export interface NoteSource {
  /** Bucket name, when the object came from S3. */
  readonly bucket?: string;
  /** Object key, or file path in local mode. */
  readonly key: string;
  readonly versionId?: string;
  readonly etag?: string;
  /** 1-based data row of a CSV file (the header is row 0). */
  readonly row?: number;
  /** 1-based physical line: of an NDJSON/JSONL record, or where a CSV record starts. */
  readonly line?: number;
}

/** One clinical note, as every reader emits it. */
export interface NoteRecord {
  readonly noteId: string;
  readonly patientId: string;
  readonly encounterId?: string;
  /** Free text as the source names it (e.g. "Discharge summary", "Radiology", a LOINC display). */
  readonly noteType?: string;
  /** ISO 8601 date or date-time, as precise as the source gives it. */
  readonly noteDate?: string;
  readonly text: string;
  readonly source: NoteSource;
}

/** A record or a whole file that could not be read, with the reason. Nothing is dropped silently. */
export interface QuarantinedRecord {
  readonly source: NoteSource;
  /** Short machine-friendly reason, e.g. `empty note`, `missing column TEXT`, `attachment by URL only`. */
  readonly reason: string;
  /** More detail for a person (never note text). */
  readonly detail?: string;
}

/** What a reader yields: a note or a quarantined record, in file order. */
export type ReadItem =
  | { readonly kind: 'note'; readonly note: NoteRecord }
  | { readonly kind: 'quarantined'; readonly quarantined: QuarantinedRecord };

/** Input formats the readers understand. */
export type NoteFormat = 'mimic3' | 'mimic4' | 'fhir' | 'jsonl' | 'text';

/** Normalized section categories. */
export const SECTION_CATEGORIES = [
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
] as const;

/** A normalized section category. */
export type SectionCategory = (typeof SECTION_CATEGORIES)[number];

/** A section of a note: [start, end) character offsets into the note text (UTF-16 code units). */
export interface Section {
  readonly category: SectionCategory;
  /** The header as written (e.g. "HISTORY OF PRESENT ILLNESS:"), absent for text before the first header. */
  readonly title?: string;
  /** Start of the section, its header included. */
  readonly start: number;
  /** Start of the body (after the header). */
  readonly bodyStart: number;
  readonly end: number;
}

/** A sentence: [start, end) into the note text, trimmed of surrounding white space. */
export interface Sentence {
  readonly start: number;
  readonly end: number;
}

/** Kinds of assertion scope. */
export type AssertionKind = 'negated' | 'hypothetical' | 'historical' | 'family';

/** A span of text whose findings carry an assertion, with the trigger that opened it. */
export interface AssertionScope {
  readonly kind: AssertionKind;
  /** [start, end) into the note text. */
  readonly start: number;
  readonly end: number;
  /** The trigger phrase's span, absent when the scope comes from the section (e.g. Family History). */
  readonly trigger?: { readonly start: number; readonly end: number };
}

/** A chunk of one section: consecutive sentences within the token limit. */
export interface Chunk {
  readonly noteId: string;
  readonly patientId: string;
  readonly section: SectionCategory;
  /** [start, end) into the note text: `note.text.slice(start, end)` is the chunk's text. */
  readonly start: number;
  readonly end: number;
  /** WordPiece tokens, [CLS] and [SEP] included. */
  readonly tokens: number;
  /** Assertion scopes that overlap the chunk, clipped to it. */
  readonly assertions: AssertionScope[];
  /** Flags, e.g. `split-sentence` when a long sentence was cut on token boundaries. */
  readonly flags: string[];
}
