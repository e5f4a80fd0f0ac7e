/**
 * Reading the index: load the newest manifest, verify its segments (a directory store's in place,
 * a remote store's downloaded into a local cache directory), keep them open in memory, and search
 * them all at once with tombstones and metadata filters applied inside hnswlib's search (filter
 * callback), so a filtered search still returns k hits whenever k live, matching chunks exist.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { IndexError, IntegrityError } from './errors.ts';
import { type Manifest, type ManifestSegment, ManifestStore, type ManifestStoreOptions } from './manifest.ts';
import { SegmentIntegrityError } from './segment/errors.ts';
import { sha256 } from './segment/hash.ts';
import { type OpenSegment, openSegment } from './segment/load.ts';
import { type AssertionKind, type ChunkMeta, SEGMENT_FILES } from './segment/types.ts';
import { prepareQuery } from './segment/vectors.ts';
import type { ObjectStore } from './store/types.ts';
import { segmentKey } from './writer.ts';

/** The query's model differs from the one the index was built with: re-embed, or use the index's model. */
export class ModelMismatchError extends IndexError {
  /**
   * @param expected the index's model fingerprint
   * @param actual the query model's fingerprint
   */
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `query model ${actual} differs from the index's model ${expected}: embed queries with the index's model`,
    );
  }
}

/** Options of {@link IndexReader.open}. */
export interface IndexReaderOptions {
  /**
   * Local directory where segment files are cached (`<cacheDir>/<segment id>/<file>`), e.g. under
   * /tmp. Not used for a directory store, whose segment files are opened where they are.
   */
  readonly cacheDir: string;
  /** Fingerprint of the model that embeds queries; refused when the index holds another. Default: not checked. */
  readonly modelFingerprint?: string;
  /** Options of the manifest store (key prefix). */
  readonly manifest?: ManifestStoreOptions;
}

/**
 * Metadata filters of a search; every given field must hold (AND). Empty lists are ignored.
 */
export interface SearchFilter {
  /** Keep chunks of these patients. */
  readonly patientIds?: readonly string[];
  /** Keep chunks of notes of these types (chunks without a note type are dropped). */
  readonly noteTypes?: readonly string[];
  /**
   * Keep chunks whose note date is on or after this ISO 8601 date or date-time (compared as
   * strings, so use the same form and time zone as the notes). Chunks without a date are dropped.
   */
  readonly dateFrom?: string;
  /**
   * Keep chunks whose note date is on or before this ISO 8601 date or date-time; the bound is
   * inclusive at its own precision (`2020-01-31` keeps `2020-01-31T23:59`). Chunks without a date
   * are dropped.
   */
  readonly dateTo?: string;
  /** Keep chunks of these sections only. */
  readonly sectionsInclude?: readonly string[];
  /** Drop chunks of these sections. */
  readonly sectionsExclude?: readonly string[];
  /**
   * Drop chunks that are mostly under an assertion of these kinds: a chunk is dropped when, for one
   * of the kinds, its scopes of that kind together (overlaps counted once, clipped to the chunk)
   * cover at least half of the chunk's characters. A chunk of zero length is never dropped.
   */
  readonly excludeAssertions?: readonly AssertionKind[];
}

/** Options of {@link IndexReader.search}. */
export interface IndexSearchOptions {
  /** Hits to return. Default 10. */
  readonly k?: number;
  /** HNSW search candidate list size per segment. Default max(k, 100). */
  readonly ef?: number;
  readonly filter?: SearchFilter;
  /** Brute force over the stored vectors instead of the graphs (verification, small segments). */
  readonly exact?: boolean;
  /** Fingerprint of the model that embedded this query; refused when it differs from the index's. */
  readonly modelFingerprint?: string;
}

/** One hit of {@link IndexReader.search}. */
export interface IndexHit {
  readonly segmentId: string;
  readonly chunkIndex: number;
  /** Cosine similarity, higher is closer. */
  readonly score: number;
  readonly chunk: ChunkMeta;
}

/** What {@link IndexReader.stats} reports. */
export interface IndexStats {
  /** Version of the manifest loaded; 0 for an empty index. */
  readonly manifestVersion: number;
  readonly segments: number;
  /** Live chunks (not tombstoned). */
  readonly chunks: number;
  /** Distinct notes with at least one live chunk. */
  readonly notes: number;
  /** Distinct patients with at least one live chunk. */
  readonly patients: number;
  /** Tombstones in the manifest. */
  readonly tombstones: number;
  /** Bytes of every segment file, `segment.json` included. */
  readonly bytes: number;
  readonly model: { readonly fingerprint: string | null };
}

const ASSERTION_BITS: Readonly<Record<AssertionKind, number>> = {
  negated: 1,
  hypothetical: 2,
  historical: 4,
  family: 8,
};

/** An open segment plus what the reader derives from it. */
interface Loaded {
  readonly entry: ManifestSegment;
  readonly segment: OpenSegment;
  /** Bytes of the segment's files, `segment.json` included. */
  readonly bytes: number;
  /** String id → string, built on first use. */
  ids?: Map<string, number>;
  /** Per chunk, the assertion kinds (bits) covering ≥ half of it; built on first use. */
  assertionMask?: Uint8Array;
  /** The bits set in any chunk's {@link assertionMask} (OR of them all), built with it. */
  assertionBitsUsed?: number;
}

/** Per-segment dead-note mask: `dead[stringId] === 1` when that note's chunks here are tombstoned. */
function deadMask(l: Loaded, tombstones: ReadonlyMap<string, number>): Uint8Array | undefined {
  if (tombstones.size === 0) return undefined;
  const { strings } = l.segment.chunks;
  const dead = new Uint8Array(strings.length);
  let any = false;
  for (let s = 0; s < strings.length; s++) {
    const at = tombstones.get(strings[s]!);
    if (at !== undefined && l.entry.addedIn < at) {
      dead[s] = 1;
      any = true;
    }
  }
  return any ? dead : undefined;
}

function stringIds(l: Loaded): Map<string, number> {
  if (!l.ids) {
    l.ids = new Map(l.segment.chunks.strings.map((s, i) => [s, i]));
  }
  return l.ids;
}

/**
 * Fraction of [start, end) covered by the union of `scopes` (overlaps counted once, scopes clipped
 * to the range); 0 for an empty range. The search filter and the query API's evidence labels both
 * decide "mostly under an assertion" with it.
 */
export function coverage(
  start: number,
  end: number,
  scopes: readonly { start: number; end: number }[],
): number {
  if (end <= start) return 0;
  const clipped = scopes
    .map((s) => [Math.max(start, s.start), Math.min(end, s.end)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let reach = start;
  for (const [a, b] of clipped) {
    const from = Math.max(a, reach);
    if (b > from) {
      covered += b - from;
      reach = b;
    }
  }
  return covered / (end - start);
}

function assertionMask(l: Loaded): Uint8Array {
  if (!l.assertionMask) {
    const n = l.segment.count;
    const mask = new Uint8Array(n);
    let used = 0;
    for (let i = 0; i < n; i++) {
      const c = l.segment.chunk(i);
      if (c.assertions.length === 0 || c.end <= c.start) continue;
      for (const [kind, bit] of Object.entries(ASSERTION_BITS)) {
        const scopes = c.assertions.filter((a) => a.kind === kind);
        if (scopes.length > 0 && coverage(c.start, c.end, scopes) >= 0.5) mask[i]! |= bit;
      }
      used |= mask[i]!;
    }
    l.assertionMask = mask;
    l.assertionBitsUsed = used;
  }
  return l.assertionMask;
}

/** The string ids of `values` in the segment (values no chunk uses are left out). */
function idSet(l: Loaded, values: readonly string[] | undefined): Set<number> | undefined {
  if (!values || values.length === 0) return undefined;
  const ids = stringIds(l);
  const out = new Set<number>();
  for (const v of values) {
    const id = ids.get(v);
    if (id !== undefined) out.add(id);
  }
  return out;
}

/**
 * The filter callback of one segment for one query, or undefined when every chunk passes. Returns
 * `false` (nothing can match) as a shortcut when an include list matches no string of the segment.
 */
function segmentFilter(
  l: Loaded,
  dead: Uint8Array | undefined,
  f: SearchFilter | undefined,
): ((i: number) => boolean) | undefined | false {
  const table = l.segment.chunks;
  const noteCol = table.column('noteId');
  const patients = idSet(l, f?.patientIds);
  const types = idSet(l, f?.noteTypes);
  const include = idSet(l, f?.sectionsInclude);
  const exclude = idSet(l, f?.sectionsExclude);
  if (patients?.size === 0 || types?.size === 0 || include?.size === 0) return false;
  const dateFrom = f?.dateFrom;
  const dateTo = f?.dateTo;
  const hasDate = dateFrom !== undefined || dateTo !== undefined;
  let assertionBits = 0;
  for (const kind of f?.excludeAssertions ?? []) {
    const bit = ASSERTION_BITS[kind];
    if (bit === undefined) throw new RangeError(`unknown assertion kind ${JSON.stringify(kind)}`);
    assertionBits |= bit;
  }
  // Like tombstones, an assertion filter that excludes no chunk of this segment is no filter: the
  // search then runs without a callback into JavaScript for every candidate (about 10% of an HNSW
  // search's time).
  const mask = assertionBits ? assertionMask(l) : undefined;
  if (mask && (l.assertionBitsUsed! & assertionBits) === 0) assertionBits = 0;
  if (!dead && !patients && !types && !include && !exclude && !hasDate && assertionBits === 0)
    return undefined;

  const patientCol = table.column('patientId');
  const typeCol = table.column('noteType');
  const sectionCol = table.column('section');
  const dateCol = table.column('noteDate');
  const { strings } = table;
  const dateOk = new Map<number, boolean>();
  const passesDate = (id: number): boolean => {
    let ok = dateOk.get(id);
    if (ok === undefined) {
      const d = strings[id];
      ok =
        d !== undefined &&
        (dateFrom === undefined || d >= dateFrom) &&
        (dateTo === undefined || d.slice(0, dateTo.length) <= dateTo);
      dateOk.set(id, ok);
    }
    return ok;
  };
  return (i: number): boolean =>
    !(dead && dead[noteCol[i]!] === 1) &&
    !(patients && !patients.has(patientCol[i]!)) &&
    !(types && !types.has(typeCol[i]!)) &&
    !(include && !include.has(sectionCol[i]!)) &&
    !exclude?.has(sectionCol[i]!) &&
    !(hasDate && !passesDate(dateCol[i]!)) &&
    !(assertionBits !== 0 && (mask![i]! & assertionBits) !== 0);
}

/**
 * A searchable view of the newest manifest of an index. Open with {@link IndexReader.open}; call
 * {@link IndexReader.refresh} to pick up newer commits.
 */
export class IndexReader {
  private manifestNow: Manifest | undefined;
  private loaded = new Map<string, Loaded>();
  private dead = new Map<string, Uint8Array | undefined>();
  private refreshing: Promise<boolean> | undefined;
  private readonly manifests: ManifestStore;

  private constructor(
    private readonly store: ObjectStore,
    private readonly options: IndexReaderOptions,
  ) {
    this.manifests = new ManifestStore(store, options.manifest);
  }

  /**
   * Loads the newest manifest and opens every segment it lists (verifying each; downloading it first
   * from a remote store).
   * @throws ModelMismatchError when `options.modelFingerprint` differs from the index's model
   * @throws SegmentIntegrityError naming the segment and file when a segment fails its checks
   */
  static async open(store: ObjectStore, options: IndexReaderOptions): Promise<IndexReader> {
    const reader = new IndexReader(store, options);
    await reader.refresh();
    return reader;
  }

  /** The manifest in use, or undefined for an empty index. */
  get manifest(): Manifest | undefined {
    return this.manifestNow;
  }

  /** The open segments, in manifest order. */
  get segments(): readonly OpenSegment[] {
    return [...this.loaded.values()].map((l) => l.segment);
  }

  /**
   * Re-reads the newest manifest: opens segments it added, drops those it removed, applies its
   * tombstones. The reader's state changes only when every new segment opened. Returns whether the
   * manifest version changed.
   */
  async refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = undefined;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const manifest = await this.manifests.latest();
    if (manifest === undefined || manifest.version === this.manifestNow?.version) return false;
    const wanted = this.options.modelFingerprint;
    if (wanted !== undefined && manifest.modelFingerprint !== null && manifest.modelFingerprint !== wanted) {
      throw new ModelMismatchError(manifest.modelFingerprint, wanted);
    }
    const next = new Map<string, Loaded>();
    await Promise.all(
      manifest.segments.map(async (entry) => {
        const have = this.loaded.get(entry.id);
        next.set(entry.id, have ? { ...have, entry } : await this.load(entry, manifest));
      }),
    );
    const ordered = new Map(manifest.segments.map((s) => [s.id, next.get(s.id)!]));
    const tombstones = new Map(manifest.tombstones.map((t) => [t.noteId, t.version]));
    this.dead = new Map([...ordered].map(([id, l]) => [id, deadMask(l, tombstones)]));
    this.loaded = ordered;
    this.manifestNow = manifest;
    return true;
  }

  /**
   * Opens one segment. A directory store's segment files are already local (`ObjectStore.pathOf`)
   * and, being content-addressed, never change, so they are checked and loaded where they are:
   * copying them into the cache first cost about a second of a 100,000-chunk index's cold start.
   * From any other
   * store: from the cache when its copy passes every check, else downloaded afresh (`segment.json`
   * first, checked against the manifest, then the data files) and checked again.
   */
  private async load(entry: ManifestSegment, manifest: Manifest): Promise<Loaded> {
    const inPlace = this.store.pathOf
      ? dirname(this.store.pathOf(segmentKey(entry.id, SEGMENT_FILES.descriptor)))
      : undefined;
    const dir = inPlace ?? join(this.options.cacheDir, entry.id);
    const expected = {
      id: entry.id,
      sha256: entry.sha256,
      ...(manifest.modelFingerprint === null ? {} : { modelFingerprint: manifest.modelFingerprint }),
      ...(manifest.dims === null ? {} : { dims: manifest.dims }),
    };
    const finish = async (segment: OpenSegment): Promise<Loaded> => {
      if (segment.count !== entry.count) {
        throw new SegmentIntegrityError(
          entry.id,
          SEGMENT_FILES.descriptor,
          `holds ${segment.count} chunks, the manifest says ${entry.count}`,
        );
      }
      const d = segment.descriptor;
      const descriptorBytes = (await readFile(join(dir, SEGMENT_FILES.descriptor))).length;
      const bytes =
        descriptorBytes +
        d.files[SEGMENT_FILES.graph].bytes +
        d.files[SEGMENT_FILES.vectors].bytes +
        d.files[SEGMENT_FILES.chunks].bytes;
      return { entry, segment, bytes };
    };
    if (inPlace !== undefined) return finish(await openSegment(inPlace, expected));
    try {
      return await finish(await openSegment(dir, expected));
    } catch (error) {
      if (!(error instanceof IntegrityError)) throw error;
      // Not cached, or a damaged cached copy: download afresh.
    }
    await mkdir(dir, { recursive: true });
    try {
      const descriptorPath = join(dir, SEGMENT_FILES.descriptor);
      await this.store.getToFile(segmentKey(entry.id, SEGMENT_FILES.descriptor), descriptorPath);
      const actual = sha256(await readFile(descriptorPath));
      if (actual !== entry.sha256) {
        throw new SegmentIntegrityError(
          entry.id,
          SEGMENT_FILES.descriptor,
          `sha256 ${actual}, the manifest says ${entry.sha256}`,
        );
      }
      await Promise.all(
        [SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks].map((file) =>
          this.store.getToFile(segmentKey(entry.id, file), join(dir, file)),
        ),
      );
      return await finish(await openSegment(dir, expected));
    } catch (error) {
      // Leave no bad copy in the cache.
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * The k chunks nearest to `query` by cosine similarity over every live segment, best first.
   * Tombstoned chunks and chunks failing `filter` are skipped inside each segment's search, so k
   * hits come back whenever k live, matching chunks exist (HNSW is approximate: raise `ef` when a
   * filter passes very few chunks).
   * @throws ModelMismatchError when `options.modelFingerprint` differs from the index's model
   * @throws RangeError for a bad k or ef, or a query of the wrong dimensions, not finite or zero
   */
  async search(query: Float32Array, options: IndexSearchOptions = {}): Promise<IndexHit[]> {
    const k = options.k ?? 10;
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    const indexModel = this.manifestNow?.modelFingerprint ?? null;
    if (
      options.modelFingerprint !== undefined &&
      indexModel !== null &&
      options.modelFingerprint !== indexModel
    ) {
      throw new ModelMismatchError(indexModel, options.modelFingerprint);
    }
    const dims = this.manifestNow?.dims;
    if (typeof dims === 'number' && query.length !== dims) {
      throw new RangeError(`query has ${query.length} dimensions, the index has ${dims}`);
    }
    // The graph path merges on the graph's own scores and recomputes exact ones for the k kept
    // (see SegmentSearchOptions.graphScores): k rows read, not k per segment.
    const graph = !options.exact;
    const perSegment = await Promise.all(
      [...this.loaded.values()].map(async (l) => {
        const filter = segmentFilter(l, this.dead.get(l.entry.id), options.filter);
        if (filter === false) return [];
        const hits = l.segment.search(query, k, {
          ...(options.ef === undefined ? {} : { ef: options.ef }),
          ...(filter ? { filter } : {}),
          ...(graph ? { graphScores: true } : { exact: true }),
        });
        return hits.map((h) => ({ l, chunkIndex: h.chunkIndex, score: h.score }));
      }),
    );
    const best = (a: { l: Loaded; chunkIndex: number; score: number }, b: typeof a) =>
      b.score - a.score ||
      (a.l.entry.id < b.l.entry.id ? -1 : a.l.entry.id > b.l.entry.id ? 1 : 0) ||
      a.chunkIndex - b.chunkIndex;
    const kept = perSegment.flat().sort(best).slice(0, k);
    if (graph && kept.length > 0) {
      const q = prepareQuery(query, kept[0]!.l.segment.dims);
      for (const h of kept) h.score = h.l.segment.scoreOf(q, h.chunkIndex);
      kept.sort(best);
    }
    return kept.map((h) => ({
      segmentId: h.l.entry.id,
      chunkIndex: h.chunkIndex,
      score: h.score,
      chunk: h.l.segment.chunk(h.chunkIndex),
    }));
  }

  /** Counts over the loaded manifest (live chunks, notes, patients exclude tombstoned chunks). */
  stats(): IndexStats {
    let chunks = 0;
    let bytes = 0;
    const notes = new Set<string>();
    const patients = new Set<string>();
    for (const l of this.loaded.values()) {
      bytes += l.bytes;
      const table = l.segment.chunks;
      const noteCol = table.column('noteId');
      const patientCol = table.column('patientId');
      const dead = this.dead.get(l.entry.id);
      for (let i = 0; i < table.count; i++) {
        if (dead && dead[noteCol[i]!] === 1) continue;
        chunks++;
        notes.add(table.strings[noteCol[i]!]!);
        patients.add(table.strings[patientCol[i]!]!);
      }
    }
    return {
      manifestVersion: this.manifestNow?.version ?? 0,
      segments: this.loaded.size,
      chunks,
      notes: notes.size,
      patients: patients.size,
      tombstones: this.manifestNow?.tombstones.length ?? 0,
      bytes,
      model: { fingerprint: this.manifestNow?.modelFingerprint ?? null },
    };
  }
}
