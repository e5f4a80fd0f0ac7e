/**
 * Garbage collection of an index's store: old manifests, segments no kept manifest references, and
 * the stored texts of deleted notes. Nothing is deleted before a grace period has passed, which is
 * what keeps every reader and writer safe without locks:
 *
 * - A manifest is deleted only when a newer version was committed more than `graceMs` ago (it has
 *   not been the newest for that long), and it is not among the `keepVersions` newest. A reader that
 *   opened it within the grace period can still read it and every segment it lists.
 * - A segment is deleted only when no kept manifest lists it AND its newest file is older than
 *   `graceMs`. A writer uploads a segment's files before it commits them, so a segment uploaded but
 *   not yet committed (by a job running while GC runs) is younger than the grace period and stays.
 *   The writer rewrites a reused content-addressed file rather than trusting the old copy, so a
 *   reused segment is young again too.
 * - A note's stored texts (`texts/<sha256(noteId)>/…`, see `NoteTextStore`) are deleted when the
 *   newest manifest tombstones the note at a version committed more than `graceMs` ago, no segment
 *   of the newest manifest holds a live chunk of the note (a re-ingested note keeps its texts), and
 *   the text object itself is older than `graceMs` (an embed job stores texts before it commits).
 *
 * Right before deleting, GC lists the manifests again and keeps whatever a version committed since
 * its plan references; after deleting it checks once more and reports (never hides) a commit that
 * landed in between and references something deleted. The grace period must exceed the longest
 * time between a job's upload and its commit (default one hour; jobs commit within seconds).
 */
import { IndexError, IntegrityError } from './errors.ts';
import { type Manifest, ManifestStore, type ManifestStoreOptions } from './manifest.ts';
import { sha256 } from './segment/hash.ts';
import { ChunkTable } from './segment/meta.ts';
import { SEGMENT_FILES } from './segment/types.ts';
import type { ListedObject, ObjectStore } from './store/types.ts';
import { noteTextPrefix } from './texts.ts';
import { SEGMENTS_PREFIX, segmentKey } from './writer.ts';

/** Defaults of {@link collectGarbage}. */
export const GC_DEFAULTS = {
  /** One hour: far longer than a job takes from upload to commit, or a reader from manifest to segments. */
  graceMs: 3_600_000,
  /** The three newest manifests are always kept, whatever their age. */
  keepVersions: 3,
  /** Deletes in flight at once. */
  concurrency: 8,
} as const;

/** Options of {@link collectGarbage}. */
export interface GarbageCollectionOptions {
  /**
   * How long something must have been garbage before it is deleted, in milliseconds: a manifest
   * superseded that long ago, a segment file written that long ago. Default 3,600,000 (1 hour).
   */
  readonly graceMs?: number;
  /** Newest manifest versions kept whatever their age (≥ 1). Default 3. */
  readonly keepVersions?: number;
  /** The time to measure ages against. Default: now. */
  readonly now?: Date;
  /** Plan and report only; delete nothing. Default false. */
  readonly dryRun?: boolean;
  /** Also delete the stored texts of deleted notes. Default true. */
  readonly texts?: boolean;
  /** Deletes in flight at once. Default 8. */
  readonly concurrency?: number;
  /** Options of the manifest store (key prefix). */
  readonly manifest?: ManifestStoreOptions;
}

/** What {@link collectGarbage} did (or, with `dryRun`, would do). */
export interface GarbageCollectionResult {
  readonly dryRun: boolean;
  /** The newest manifest version when GC planned (0 for an index without manifests). */
  readonly newestVersion: number;
  /** Manifest versions kept. */
  readonly keptVersions: readonly number[];
  /** Manifest versions deleted. */
  readonly deletedVersions: readonly number[];
  /** Ids of the segments deleted (every file of each). */
  readonly deletedSegments: readonly string[];
  /** Notes whose stored texts were deleted (ids as given in tombstones). */
  readonly deletedTextNotes: readonly string[];
  /** Objects deleted (manifests, segment files, texts). */
  readonly deletedObjects: number;
  /** Bytes of the objects deleted. */
  readonly deletedBytes: number;
  /** What was kept although not current, collected by a later run once old enough. */
  readonly pending: {
    /** Manifests other than the newest kept (superseded within the grace period, or among the newest kept). */
    readonly manifests: number;
    /** Unreferenced segments with a file written within the grace period (e.g. uploaded, not yet committed). */
    readonly segments: number;
    /** Texts of deleted notes kept because they were written within the grace period. */
    readonly texts: number;
  };
  /**
   * Segments deleted although a manifest committed while GC ran lists them: a writer took longer
   * than the grace period between upload and commit, or reused an old segment in the instant
   * between GC's last check and its delete. Empty unless something went wrong; re-run the job.
   */
  readonly conflicts: readonly string[];
}

/** Garbage collection could not proceed safely (a kept manifest or a segment it must read is unreadable). */
export class GarbageCollectionError extends IndexError {}

/** A parsed `--grace`-style duration: `90s`, `30m`, `1h`, `2d`, `500ms`, or `0`. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) {
    throw new RangeError(`'${text}' is not a duration: use a number and a unit (ms, s, m, h, d), e.g. 1h`);
  }
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const unit = units[m[2] ?? 'ms'] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

interface ListedManifest {
  readonly version: number;
  readonly object: ListedObject;
}

async function listManifests(store: ObjectStore, prefix: string): Promise<ListedManifest[]> {
  const out: ListedManifest[] = [];
  for await (const object of store.list(prefix)) {
    const m = /^(\d{10})\.json$/.exec(object.key.slice(prefix.length));
    if (m) out.push({ version: Number(m[1]), object });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** Whether an object was last written before `cutoff`; unknown times count as recent (never collected). */
function olderThan(object: ListedObject, cutoff: number): boolean {
  return object.lastModified !== undefined && object.lastModified.getTime() < cutoff;
}

async function runPool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * The note ids of the chunks of one stored segment, read from its `chunks.bin`, with `segment.json`
 * checked against the manifest's sha256 and `chunks.bin` against `segment.json`.
 */
async function segmentNoteIds(store: ObjectStore, id: string, descriptorSha: string): Promise<Set<string>> {
  const descriptorBytes = await store.get(segmentKey(id, SEGMENT_FILES.descriptor));
  if (sha256(descriptorBytes) !== descriptorSha) {
    throw new IntegrityError(`segment ${id}: ${SEGMENT_FILES.descriptor} differs from the manifest's sha256`);
  }
  const descriptor = JSON.parse(new TextDecoder().decode(descriptorBytes)) as {
    files?: Record<string, { sha256?: string }>;
  };
  const chunkBytes = await store.get(segmentKey(id, SEGMENT_FILES.chunks));
  if (sha256(chunkBytes) !== descriptor.files?.[SEGMENT_FILES.chunks]?.sha256) {
    throw new IntegrityError(`segment ${id}: ${SEGMENT_FILES.chunks} differs from its segment.json`);
  }
  const table = ChunkTable.decode(chunkBytes);
  const notes = table.column('noteId');
  const out = new Set<string>();
  for (let i = 0; i < table.count; i++) out.add(table.strings[notes[i]!]!);
  return out;
}

/**
 * Notes tombstoned in `manifest` that keep no live chunk in it, given the note ids each of its
 * segments holds (`noteIdsOf`, asked only for segments added at or after some tombstone).
 * A chunk is live when its segment was added at or after the note's tombstone (a re-ingest).
 */
export async function deletedNotes(
  manifest: Manifest,
  noteIdsOf: (segmentId: string) => Promise<ReadonlySet<string>>,
  only?: (noteId: string, version: number) => boolean,
): Promise<Map<string, number>> {
  const deleted = new Map<string, number>();
  for (const t of manifest.tombstones)
    if (!only || only(t.noteId, t.version)) deleted.set(t.noteId, t.version);
  if (deleted.size === 0) return deleted;
  let oldest = Number.POSITIVE_INFINITY;
  for (const version of deleted.values()) oldest = Math.min(oldest, version);
  for (const entry of manifest.segments) {
    if (entry.addedIn < oldest) continue;
    for (const noteId of await noteIdsOf(entry.id)) {
      const at = deleted.get(noteId);
      if (at !== undefined && entry.addedIn >= at) deleted.delete(noteId);
    }
  }
  return deleted;
}

/**
 * Collects the garbage of the index in `store` (see the module comment for what is garbage and
 * when). Safe to run while jobs commit and readers read, and while another GC runs (deleting a
 * missing object is not an error). Objects whose store reports no `lastModified` are never deleted.
 * @throws GarbageCollectionError when a kept manifest cannot be read, or (texts) a segment's chunk
 *   metadata cannot be read and checked: then nothing has been deleted
 * @throws RangeError for a negative grace or keepVersions < 1
 */
export async function collectGarbage(
  store: ObjectStore,
  options: GarbageCollectionOptions = {},
): Promise<GarbageCollectionResult> {
  const graceMs = options.graceMs ?? GC_DEFAULTS.graceMs;
  const keepVersions = options.keepVersions ?? GC_DEFAULTS.keepVersions;
  const concurrency = options.concurrency ?? GC_DEFAULTS.concurrency;
  if (!(graceMs >= 0) || !Number.isFinite(graceMs))
    throw new RangeError(`graceMs must be ≥ 0, got ${graceMs}`);
  if (!Number.isInteger(keepVersions) || keepVersions < 1) {
    throw new RangeError(`keepVersions must be an integer ≥ 1, got ${keepVersions}`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be an integer ≥ 1, got ${concurrency}`);
  }
  const dryRun = options.dryRun ?? false;
  const cutoff = (options.now ?? new Date()).getTime() - graceMs;
  const manifests = new ManifestStore(store, options.manifest);
  const prefix = options.manifest?.prefix ?? 'manifests/';

  // 1. Manifests: keep the newest keepVersions, and every version superseded within the grace period.
  const listed = await listManifests(store, prefix);
  const newest = listed.at(-1);
  const kept: ListedManifest[] = [];
  const expired: ListedManifest[] = [];
  listed.forEach((m, i) => {
    const successor = listed[i + 1];
    if (i >= listed.length - keepVersions || !successor || !olderThan(successor.object, cutoff)) kept.push(m);
    else expired.push(m);
  });
  // `deleting` says whether deletions may already have happened, so the message does not claim otherwise.
  const read = async (version: number, deleting = false): Promise<Manifest> => {
    try {
      return await manifests.read(version);
    } catch (cause) {
      const state = deleting ? 'some objects may already be deleted' : 'nothing was deleted';
      throw new GarbageCollectionError(`cannot read kept manifest version ${version}: ${state}`, {
        cause,
      });
    }
  };
  const keptManifests = await Promise.all(kept.map((m) => read(m.version)));
  const referenced = new Set(keptManifests.flatMap((m) => m.segments.map((s) => s.id)));

  // 2. Segments: unreferenced, and every file older than the grace period.
  const segmentFiles = new Map<string, ListedObject[]>();
  for await (const object of store.list(SEGMENTS_PREFIX)) {
    const id = object.key.slice(SEGMENTS_PREFIX.length).split('/')[0]!;
    const files = segmentFiles.get(id) ?? [];
    files.push(object);
    segmentFiles.set(id, files);
  }
  const doomedSegments = new Map<string, ListedObject[]>();
  let pendingSegments = 0;
  for (const [id, files] of segmentFiles) {
    if (referenced.has(id)) continue;
    if (files.every((f) => olderThan(f, cutoff))) doomedSegments.set(id, files);
    else pendingSegments++;
  }

  // 3. Texts of notes deleted (tombstoned at a version committed before the cutoff) with no live chunk.
  const doomedTexts: ListedObject[] = [];
  const textNotes = new Set<string>();
  let pendingTexts = 0;
  const newestManifest = keptManifests.at(-1);
  if ((options.texts ?? true) && newestManifest) {
    const committedAt = new Map(listed.map((m) => [m.version, m.object]));
    const settled = (version: number): boolean => {
      const object = committedAt.get(version);
      // A version no longer listed was deleted by an earlier GC: superseded, so older than any grace.
      return object === undefined ? version < (listed[0]?.version ?? 0) : olderThan(object, cutoff);
    };
    // Only notes that still have stored texts need the (costlier) look into the segments, so a run
    // after the texts are gone reads no chunk metadata at all.
    const stored = new Map<string, ListedObject[]>();
    const tombstones = newestManifest.tombstones.filter((t) => settled(t.version));
    await runPool(tombstones, concurrency, async (t) => {
      const objects: ListedObject[] = [];
      for await (const object of store.list(noteTextPrefix(t.noteId))) objects.push(object);
      if (objects.length > 0) stored.set(t.noteId, objects);
    });
    let deleted = new Map<string, number>();
    if (stored.size > 0) {
      try {
        deleted = await deletedNotes(
          newestManifest,
          (id) => segmentNoteIds(store, id, newestManifest.segments.find((s) => s.id === id)!.sha256),
          (noteId) => stored.has(noteId),
        );
      } catch (cause) {
        throw new GarbageCollectionError(
          'cannot read the chunk metadata needed to tell deleted notes from re-ingested ones: nothing was deleted',
          { cause },
        );
      }
    }
    for (const noteId of deleted.keys()) {
      for (const object of stored.get(noteId)!) {
        if (olderThan(object, cutoff)) {
          doomedTexts.push(object);
          textNotes.add(noteId);
        } else pendingTexts++;
      }
    }
  }

  // 4. Re-check: a version committed since the plan keeps whatever it references.
  const since = async (after: number, deleting = false) => {
    const later = (await listManifests(store, prefix)).filter((m) => m.version > after);
    return (await Promise.all(later.map((m) => read(m.version, deleting)))).flatMap((m) =>
      m.segments.map((s) => s.id),
    );
  };
  const planned = newest?.version ?? 0;
  for (const id of await since(planned)) doomedSegments.delete(id);

  let deletedObjects = 0;
  let deletedBytes = 0;
  const remove = async (object: ListedObject) => {
    if (!dryRun) await store.delete(object.key);
    deletedObjects++;
    deletedBytes += object.size;
  };
  // segment.json first: a segment interrupted half-way then lacks its marker of completeness.
  const segmentObjects = [...doomedSegments.values()].flatMap((files) =>
    [...files].sort(
      (a, b) =>
        Number(b.key.endsWith(`/${SEGMENT_FILES.descriptor}`)) -
        Number(a.key.endsWith(`/${SEGMENT_FILES.descriptor}`)),
    ),
  );
  await runPool(segmentObjects, concurrency, remove);
  await runPool(doomedTexts, concurrency, remove);
  // Oldest manifests first, so the versions left are always a contiguous newest run.
  for (const m of expired) await remove(m.object);

  // 5. Report a commit that landed after the re-check and lists a deleted segment.
  const conflicts = dryRun ? [] : (await since(planned, true)).filter((id) => doomedSegments.has(id));

  return {
    dryRun,
    newestVersion: planned,
    keptVersions: kept.map((m) => m.version),
    deletedVersions: expired.map((m) => m.version),
    deletedSegments: [...doomedSegments.keys()].sort(),
    deletedTextNotes: [...textNotes].sort(),
    deletedObjects,
    deletedBytes,
    pending: {
      manifests: Math.max(0, kept.length - 1),
      segments: pendingSegments,
      texts: pendingTexts,
    },
    conflicts: [...new Set(conflicts)],
  };
}
