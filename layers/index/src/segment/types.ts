/**
 * Types of an immutable, content-addressed index segment: the chunk metadata it carries, its
 * descriptor (`segment.json`) and the options of building and opening one.
 */

/** Kinds of assertion scope (the same names as `@cohort/notes`). */
export type AssertionKind = 'negated' | 'hypothetical' | 'historical' | 'family';

/** An assertion scope of a chunk: [start, end) into the note text. */
export interface ChunkAssertion {
  readonly kind: AssertionKind;
  readonly start: number;
  readonly end: number;
}

/**
 * Where the chunk's note came from, and which version of it. Re-ingesting a note id supersedes its
 * earlier chunks; the index orders versions by `sequencer` (the S3 event sequencer, a hex string
 * compared by length then lexicographically), and keeps `versionId` and `etag` for audit.
 */
export interface ChunkSource {
  readonly key?: string;
  readonly versionId?: string;
  readonly etag?: string;
  readonly sequencer?: string;
}

/**
 * The metadata of one indexed chunk: a `Chunk` of `@cohort/notes` plus what search filters on.
 * Offsets and token counts are non-negative integers below 2^32.
 */
export interface ChunkMeta {
  readonly noteId: string;
  readonly patientId: string;
  /** Section category (e.g. `hospital_course`). */
  readonly section: string;
  /** [start, end) into the note text (UTF-16 code units). */
  readonly start: number;
  readonly end: number;
  /** WordPiece tokens, [CLS] and [SEP] included. */
  readonly tokens: number;
  readonly assertions: readonly ChunkAssertion[];
  readonly flags: readonly string[];
  readonly noteType?: string;
  /** ISO 8601 date or date-time. */
  readonly noteDate?: string;
  readonly source?: ChunkSource;
}

/** The format tag of `segment.json`. */
export const SEGMENT_FORMAT = 'cohort-segment/1';

/** File names inside a segment directory. */
export const SEGMENT_FILES = {
  graph: 'graph.hnsw',
  vectors: 'vectors.f32',
  chunks: 'chunks.bin',
  descriptor: 'segment.json',
} as const;

/** Size and checksum of one file of a segment. */
export interface SegmentFile {
  readonly bytes: number;
  /** Lower-case hex sha256 of the file's bytes. */
  readonly sha256: string;
}

/** The contents of `segment.json`. */
export interface SegmentDescriptor {
  readonly format: typeof SEGMENT_FORMAT;
  /** Content address: sha256 over the format, parameters and every file's sha256 (see `segmentId`). */
  readonly id: string;
  readonly modelFingerprint: string;
  readonly dims: number;
  /** Inner product; the vectors are L2-normalized, so it equals cosine similarity. */
  readonly metric: 'ip';
  readonly M: number;
  readonly efConstruction: number;
  readonly seed: number;
  /** Number of chunks (= vectors = graph elements). */
  readonly count: number;
  /** Vectors whose norm was not ≈ 1 and were normalized at build time. */
  readonly normalized: number;
  readonly files: Readonly<Record<'graph.hnsw' | 'vectors.f32' | 'chunks.bin', SegmentFile>>;
}

/** What a segment is built from. */
export interface SegmentInput {
  /** n × dims row-major float32 (n = chunks.length), or one vector per chunk. */
  readonly vectors: Float32Array | readonly Float32Array[];
  readonly chunks: readonly ChunkMeta[];
}

/** Options of {@link buildSegment}. */
export interface BuildSegmentOptions {
  /** Local output directory (created if missing); its segment files are overwritten. */
  readonly dir: string;
  readonly dims: number;
  /** The encoder's model fingerprint; a segment refuses a query model with another. */
  readonly modelFingerprint: string;
  /** HNSW links per node (default 16). */
  readonly M?: number;
  /** HNSW candidate list size while building (default 200). */
  readonly efConstruction?: number;
  /** Random seed of the level generator (default 100, hnswlib's own default). */
  readonly seed?: number;
}

/** What a caller expects of a segment it opens (from a manifest); any mismatch is an `IntegrityError`. */
export interface ExpectedSegment {
  readonly id?: string;
  readonly modelFingerprint?: string;
  readonly dims?: number;
  /** sha256 of the `segment.json` bytes. */
  readonly sha256?: string;
}

/** Options of `OpenSegment.search`. */
export interface SegmentSearchOptions {
  /** HNSW search candidate list size (default max(k, 100)); ignored by the exact path. */
  readonly ef?: number;
  /** Keep a chunk only when this returns true (called with the chunk index). */
  readonly filter?: (chunkIndex: number) => boolean;
  /** Brute force over the stored vectors instead of the graph. */
  readonly exact?: boolean;
  /**
   * Graph path only: score hits with the graph's own float32 inner products instead of recomputing
   * them from the stored vectors (see `OpenSegment.scoreOf`). Default false. A caller that merges
   * several segments' hits and keeps the best k rescores only those, not every segment's k: each
   * recomputed score reads a stored row (3 KB at 768-d) from memory, about 2 µs.
   */
  readonly graphScores?: boolean;
}

/** One search hit. */
export interface SegmentHit {
  readonly chunkIndex: number;
  /** Cosine similarity (= inner product of unit vectors), higher is closer. */
  readonly score: number;
}

/** Defaults of the build parameters. */
export const SEGMENT_DEFAULTS = { M: 16, efConstruction: 200, seed: 100, ef: 100 } as const;
