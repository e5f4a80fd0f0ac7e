/**
 * Compaction: merge small segments into larger ones from their stored vectors and chunk metadata
 * (no re-embedding), dropping chunks that are dead under the manifest's tombstones, and replace
 * them in one commit (N segments out, 1 in). The merged segment carries the NEWEST `addedIn` of the
 * segments it replaces, so a delete committed while compaction ran still kills the chunks it names.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { IntegrityError, PreconditionFailedError } from './errors.ts';
import {
  isChunkLive,
  type Manifest,
  type ManifestSegment,
  ManifestStore,
  type ManifestStoreOptions,
} from './manifest.ts';
import { IndexReader } from './reader.ts';
import { buildSegment } from './segment/build.ts';
import { sha256 } from './segment/hash.ts';
import type { OpenSegment } from './segment/load.ts';
import { type ChunkMeta, SEGMENT_FILES, type SegmentDescriptor } from './segment/types.ts';
import type { ObjectStore } from './store/types.ts';
import { segmentKey } from './writer.ts';

/** The tiered merge policy of {@link compact}. */
export interface CompactionPolicy {
  /** Segments a tier must hold before it is merged. Default 4. */
  readonly minSegments?: number;
  /** Largest merged segment, in live chunks. Default 200,000. */
  readonly maxSegmentChunks?: number;
  /** Size ratio between tiers: tier = floor(log_tierFactor(live chunks)). Default 4. */
  readonly tierFactor?: number;
}

/** Fraction of dead chunks at which a segment is merged with its tier whatever the tier's size. */
export const DEAD_FRACTION_TO_COMPACT = 0.2;

/** Options of {@link compact}. */
export interface CompactOptions {
  /** Local directory where segments are cached while read (as {@link IndexReader}'s). */
  readonly cacheDir: string;
  /** Local scratch directory where merged segments are built before upload. */
  readonly workDir: string;
  readonly policy?: CompactionPolicy;
  /**
   * Idempotency key of the commit; default `compact-<sha256 of the input ids>`. When one run
   * makes several merges, the second and later get `<changeId>-<n>`.
   */
  readonly changeId?: string;
  /** HNSW parameters of merged segments. Default: those of the first input segment. */
  readonly M?: number;
  readonly efConstruction?: number;
  /** Options of the manifest store (key prefix, retries). */
  readonly manifest?: ManifestStoreOptions;
}

/** One segment as the planner sees it. */
export interface PlannedSegment {
  readonly entry: ManifestSegment;
  /** Chunks still live under the manifest's tombstones. */
  readonly live: number;
}

/** One merge of {@link compact}. */
export interface CompactionMerge {
  /** Ids of the segments replaced. */
  readonly inputs: readonly string[];
  /** The segment that replaced them; undefined when every input chunk was dead (they were only removed). */
  readonly output?: ManifestSegment;
  /** Dead chunks dropped. */
  readonly removedChunks: number;
  /** Live chunks carried into the output. */
  readonly keptChunks: number;
  /** Whether the commit was applied (false: the change id had been committed before). */
  readonly applied: boolean;
}

/** Result of {@link compact}. */
export interface CompactResult {
  readonly merges: readonly CompactionMerge[];
  /** Segments replaced, over all merges. */
  readonly mergedSegments: number;
  /** Dead chunks dropped, over all merges. */
  readonly removedChunks: number;
  /** Manifest version after the last commit (or the version read when nothing was merged; 0 when empty). */
  readonly manifestVersion: number;
}

function resolvePolicy(p: CompactionPolicy = {}): Required<CompactionPolicy> {
  const minSegments = p.minSegments ?? 4;
  const maxSegmentChunks = p.maxSegmentChunks ?? 200_000;
  const tierFactor = p.tierFactor ?? 4;
  if (!Number.isInteger(minSegments) || minSegments < 2)
    throw new RangeError(`minSegments must be an integer ≥ 2, got ${minSegments}`);
  if (!Number.isInteger(maxSegmentChunks) || maxSegmentChunks < 1)
    throw new RangeError(`maxSegmentChunks must be a positive integer, got ${maxSegmentChunks}`);
  if (!(tierFactor > 1)) throw new RangeError(`tierFactor must be > 1, got ${tierFactor}`);
  return { minSegments, maxSegmentChunks, tierFactor };
}

/** Tier of a segment of `live` chunks: floor(log_factor(max(live, 1))). */
export function tierOf(live: number, tierFactor: number): number {
  // A small epsilon keeps exact powers (e.g. 16 with factor 4) in their own tier despite rounding.
  return Math.floor(Math.log(Math.max(live, 1)) / Math.log(tierFactor) + 1e-9);
}

/**
 * Plans the merges of a tiered policy: segments are grouped into tiers by live chunk count; a tier
 * holding ≥ minSegments segments is merged, smallest first, as far as the merged size stays
 * ≤ maxSegmentChunks; a segment whose dead fraction is ≥ 0.2 is merged with whatever of its tier
 * fits (alone if need be, which drops its dead chunks). Returns groups of segment ids.
 */
export function planCompaction(segments: readonly PlannedSegment[], policy?: CompactionPolicy): string[][] {
  const { minSegments, maxSegmentChunks, tierFactor } = resolvePolicy(policy);
  const tiers = new Map<number, PlannedSegment[]>();
  for (const s of segments) {
    const t = tierOf(s.live, tierFactor);
    const list = tiers.get(t) ?? [];
    list.push(s);
    tiers.set(t, list);
  }
  const isDirty = (s: PlannedSegment) =>
    s.entry.count > 0 && (s.entry.count - s.live) / s.entry.count >= DEAD_FRACTION_TO_COMPACT;
  const groups: string[][] = [];
  for (const t of [...tiers.keys()].sort((a, b) => a - b)) {
    // Dirty segments first (they must go), then smallest first; ties by id for a stable plan.
    let rest = [...tiers.get(t)!].sort(
      (a, b) =>
        Number(isDirty(b)) - Number(isDirty(a)) ||
        a.live - b.live ||
        (a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0),
    );
    while (rest.length > 0) {
      const group: PlannedSegment[] = [];
      let size = 0;
      const left: PlannedSegment[] = [];
      for (const s of rest) {
        if (size + s.live <= maxSegmentChunks || group.length === 0) {
          group.push(s);
          size += s.live;
        } else left.push(s);
      }
      if (group.length >= minSegments || group.some(isDirty)) {
        groups.push(group.map((s) => s.entry.id));
        rest = left;
      } else break;
    }
  }
  return groups;
}

/** Live chunks of each segment under the manifest's tombstones. */
function liveCounts(manifest: Manifest, segments: readonly OpenSegment[]): PlannedSegment[] {
  const tombstones = new Map(manifest.tombstones.map((t) => [t.noteId, t.version]));
  return manifest.segments.map((entry, s) => {
    const seg = segments[s]!;
    const noteCol = seg.chunks.column('noteId');
    let live = 0;
    for (let i = 0; i < seg.count; i++) {
      if (isChunkLive(tombstones, seg.chunks.strings[noteCol[i]!]!, entry.addedIn)) live++;
    }
    return { entry, live };
  });
}

async function storedSha256(store: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Create-only put; an object already there must hold the same bytes (content addressing). */
async function putOnce(store: ObjectStore, id: string, file: string, path: string, expected: string) {
  const key = segmentKey(id, file);
  try {
    await store.putFile(key, path, { ifNoneMatch: '*' });
  } catch (error) {
    if (!(error instanceof PreconditionFailedError)) throw error;
    const actual = await storedSha256(store, key);
    if (actual !== expected) {
      throw new IntegrityError(
        `segment ${id}: stored ${file} has sha256 ${actual}, expected ${expected} (corrupt store?)`,
        { cause: error },
      );
    }
    // Rewrite the same bytes so the copy is young again for garbage collection's grace period (gc.ts).
    await store.putFile(key, path);
  }
}

/** Uploads the data files, then `segment.json` last (its presence marks a complete segment). */
async function upload(store: ObjectStore, d: SegmentDescriptor, dir: string, descriptorSha: string) {
  const data = [SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks] as const;
  await Promise.all(data.map((f) => putOnce(store, d.id, f, join(dir, f), d.files[f].sha256)));
  await putOnce(store, d.id, SEGMENT_FILES.descriptor, join(dir, SEGMENT_FILES.descriptor), descriptorSha);
}

/**
 * Compacts the index in `store` by the tiered policy (see {@link planCompaction}). Each merge reads
 * the input segments' stored vectors and chunk metadata, drops chunks dead under the manifest's
 * tombstones, builds one segment, uploads it (create-only, `segment.json` last) and commits
 * `{ removeSegments: inputs, addSegments: [merged with addedIn = max(input addedIn)] }`. A merge
 * whose inputs are all dead only removes them.
 * @throws CommitConflictError when another compaction removed an input first (plan again)
 */
export async function compact(store: ObjectStore, options: CompactOptions): Promise<CompactResult> {
  const reader = await IndexReader.open(store, {
    cacheDir: options.cacheDir,
    ...(options.manifest ? { manifest: options.manifest } : {}),
  });
  const manifest = reader.manifest;
  if (!manifest) return { merges: [], mergedSegments: 0, removedChunks: 0, manifestVersion: 0 };
  const segments = reader.segments;
  const byId = new Map(manifest.segments.map((entry, i) => [entry.id, { entry, seg: segments[i]! }]));
  const groups = planCompaction(liveCounts(manifest, segments), options.policy);
  const tombstones = new Map(manifest.tombstones.map((t) => [t.noteId, t.version]));
  const manifests = new ManifestStore(store, options.manifest);
  const merges: CompactionMerge[] = [];
  let manifestVersion = manifest.version;

  for (const [g, ids] of groups.entries()) {
    const inputs = ids.map((id) => byId.get(id)!);
    const defaultId = `compact-${createHash('sha256')
      .update([...ids].sort().join('\n'))
      .digest('hex')
      .slice(0, 32)}`;
    const changeId =
      options.changeId === undefined ? defaultId : g === 0 ? options.changeId : `${options.changeId}-${g}`;
    const addedIn = Math.max(...inputs.map((i) => i.entry.addedIn));
    const chunks: ChunkMeta[] = [];
    const vectors: Float32Array[] = [];
    let removed = 0;
    for (const { entry, seg } of inputs) {
      for (let i = 0; i < seg.count; i++) {
        const chunk = seg.chunk(i);
        if (isChunkLive(tombstones, chunk.noteId, entry.addedIn)) {
          chunks.push(chunk);
          vectors.push(Float32Array.from(seg.vector(i)));
        } else removed++;
      }
    }
    const first = inputs[0]!.seg.descriptor;
    let output: ManifestSegment | undefined;
    let dir: string | undefined;
    try {
      if (chunks.length > 0) {
        dir = await mkdtemp(join(options.workDir, 'cohort-compact-'));
        const d = await buildSegment(
          { vectors, chunks },
          {
            dir,
            dims: first.dims,
            modelFingerprint: first.modelFingerprint,
            M: options.M ?? first.M,
            efConstruction: options.efConstruction ?? first.efConstruction,
          },
        );
        const descriptorSha = sha256(await readFile(join(dir, SEGMENT_FILES.descriptor)));
        await upload(store, d, dir, descriptorSha);
        output = { id: d.id, count: d.count, sha256: descriptorSha, addedIn };
      }
      const result = await manifests.commit({
        id: changeId,
        removeSegments: ids,
        ...(output
          ? { addSegments: [output], modelFingerprint: first.modelFingerprint, dims: first.dims }
          : {}),
      });
      manifestVersion = result.manifest.version;
      merges.push({
        inputs: ids,
        ...(output ? { output } : {}),
        removedChunks: removed,
        keptChunks: chunks.length,
        applied: result.applied,
      });
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }
  return {
    merges,
    mergedSegments: merges.reduce((n, m) => n + m.inputs.length, 0),
    removedChunks: merges.reduce((n, m) => n + m.removedChunks, 0),
    manifestVersion,
  };
}
