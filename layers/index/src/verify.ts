/**
 * Verification of an index in its store: every file of every segment of the newest manifest is
 * downloaded and checked (presence, size, sha256, `segment.json` against the manifest), every
 * segment is opened (its integrity checks run before hnswlib sees the graph), and chunks of deleted
 * notes still physically present are counted. Nothing bad in the store makes it throw: it reports.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { deletedNotes } from './gc.ts';
import { isChunkLive, type Manifest, ManifestStore, type ManifestStoreOptions } from './manifest.ts';
import { sha256, sha256File } from './segment/hash.ts';
import { openSegment } from './segment/load.ts';
import { SEGMENT_FILES } from './segment/types.ts';
import type { ObjectStore } from './store/types.ts';
import { noteTextPrefix } from './texts.ts';
import { segmentKey } from './writer.ts';

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** Local scratch directory; files are downloaded afresh under a temporary folder in it, then removed. */
  readonly cacheDir: string;
  /** Options of the manifest store (key prefix). */
  readonly manifest?: ManifestStoreOptions;
  /**
   * Also look for stored texts (`NoteTextStore`) of deleted notes: notes the newest manifest
   * tombstones that keep no live chunk. Default true.
   */
  readonly texts?: boolean;
}

/** What {@link verify} reports. */
export interface VerifyReport {
  /** True when there are no problems and no chunk of a deleted note remains. */
  readonly ok: boolean;
  /** One line per defect found. */
  readonly problems: string[];
  /**
   * Chunks physically present in a segment although their note is tombstoned at a version newer
   * than the segment (`addedIn`): hidden from search, but not yet dropped by compaction. Must be 0
   * for a delete to count as verified.
   */
  readonly liveChunksOfDeletedNotes: number;
  /**
   * Deleted notes (tombstoned, no live chunk left) whose text is still stored: garbage collection
   * deletes it once the grace period has passed. Must be 0 for a delete to count as verified.
   * 0 when the check did not run (`texts: false`, or a segment could not be read).
   */
  readonly textsOfDeletedNotes: number;
  /** Version of the manifest checked (0 for an empty index). */
  readonly manifestVersion: number;
  /** Segments the manifest lists. */
  readonly segments: number;
}

const DATA_FILES = [SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks] as const;

function why(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Checks the newest manifest's segments in `store`. Never throws on a bad or missing file. */
export async function verify(store: ObjectStore, options: VerifyOptions): Promise<VerifyReport> {
  const problems: string[] = [];
  let manifest: Manifest | undefined;
  try {
    manifest = await new ManifestStore(store, options.manifest).latest();
  } catch (error) {
    problems.push(`manifest: ${why(error)}`);
    const none = { liveChunksOfDeletedNotes: 0, textsOfDeletedNotes: 0, manifestVersion: 0, segments: 0 };
    return { ok: false, problems, ...none };
  }
  if (!manifest) {
    return {
      ok: true,
      problems,
      liveChunksOfDeletedNotes: 0,
      textsOfDeletedNotes: 0,
      manifestVersion: 0,
      segments: 0,
    };
  }
  const tombstones = new Map(manifest.tombstones.map((t) => [t.noteId, t.version]));
  const root = join(options.cacheDir, `verify-${randomUUID()}`);
  let deadPresent = 0;
  const seen = new Set<string>();
  // Note ids each segment holds; a segment missing here could not be read.
  const noteIds = new Map<string, Set<string>>();
  try {
    for (const entry of manifest.segments) {
      const name = `segment ${entry.id}`;
      if (seen.has(entry.id)) {
        problems.push(`${name}: listed twice in manifest version ${manifest.version}`);
        continue;
      }
      seen.add(entry.id);
      const dir = join(root, entry.id);
      await mkdir(dir, { recursive: true });
      const before = problems.length;

      // segment.json: present, and the bytes the manifest recorded.
      let descriptor: Record<string, unknown> | undefined;
      try {
        const path = join(dir, SEGMENT_FILES.descriptor);
        await store.getToFile(segmentKey(entry.id, SEGMENT_FILES.descriptor), path);
        const bytes = await readFile(path);
        const actual = sha256(bytes);
        if (actual !== entry.sha256) {
          problems.push(
            `${name}: ${SEGMENT_FILES.descriptor}: sha256 ${actual}, the manifest says ${entry.sha256}`,
          );
        }
        try {
          descriptor = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
        } catch {
          problems.push(`${name}: ${SEGMENT_FILES.descriptor}: not valid JSON`);
        }
      } catch (error) {
        problems.push(`${name}: ${SEGMENT_FILES.descriptor}: ${why(error)}`);
      }

      // Data files: present, with the size and sha256 that segment.json records.
      const files = (descriptor?.files ?? {}) as Record<
        string,
        { bytes?: unknown; sha256?: unknown } | undefined
      >;
      for (const file of DATA_FILES) {
        const key = segmentKey(entry.id, file);
        try {
          const info = await store.head(key);
          if (!info) {
            problems.push(`${name}: ${file}: missing from the store`);
            continue;
          }
          const path = join(dir, file);
          await store.getToFile(key, path);
          const actual = await sha256File(path);
          const recorded = files[file];
          if (!recorded) continue; // segment.json already reported
          if (actual.bytes !== recorded.bytes) {
            problems.push(
              `${name}: ${file}: ${actual.bytes} bytes, segment.json records ${String(recorded.bytes)}`,
            );
          } else if (actual.sha256 !== recorded.sha256) {
            problems.push(
              `${name}: ${file}: sha256 ${actual.sha256}, segment.json records ${String(recorded.sha256)}`,
            );
          }
        } catch (error) {
          problems.push(`${name}: ${file}: ${why(error)}`);
        }
      }

      // Open it: the full integrity checks (content address, dims, model, graph header), and only
      // when every file passed (a bad graph file must never reach hnswlib unchecked).
      if (problems.length > before) continue;
      try {
        const segment = await openSegment(dir, {
          id: entry.id,
          sha256: entry.sha256,
          ...(manifest.modelFingerprint === null ? {} : { modelFingerprint: manifest.modelFingerprint }),
          ...(manifest.dims === null ? {} : { dims: manifest.dims }),
        });
        if (segment.count !== entry.count) {
          problems.push(`${name}: holds ${segment.count} chunks, the manifest says ${entry.count}`);
        }
        const noteCol = segment.chunks.column('noteId');
        const ids = new Set<string>();
        for (let i = 0; i < segment.count; i++) {
          const noteId = segment.chunks.strings[noteCol[i]!]!;
          ids.add(noteId);
          if (!isChunkLive(tombstones, noteId, entry.addedIn)) deadPresent++;
        }
        noteIds.set(entry.id, ids);
      } catch (error) {
        problems.push(why(error));
      }
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  if (deadPresent > 0) {
    problems.push(
      `${deadPresent} chunks of deleted notes are still stored in segments (hidden from search): run compaction`,
    );
  }
  let textsLeft = 0;
  if ((options.texts ?? true) && manifest.segments.every((s) => noteIds.has(s.id))) {
    const deleted = await deletedNotes(manifest, async (id) => noteIds.get(id)!);
    for (const noteId of deleted.keys()) {
      try {
        for await (const _ of store.list(noteTextPrefix(noteId))) {
          textsLeft++;
          break;
        }
      } catch (error) {
        problems.push(`stored texts of deleted notes: ${why(error)}`);
        break;
      }
    }
  }
  if (textsLeft > 0) {
    problems.push(
      `${textsLeft} deleted notes still have their text stored: run \`cohort index gc\` once the grace period has passed`,
    );
  }
  return {
    ok: problems.length === 0,
    problems,
    liveChunksOfDeletedNotes: deadPresent,
    textsOfDeletedNotes: textsLeft,
    manifestVersion: manifest.version,
    segments: manifest.segments.length,
  };
}
