/**
 * Committing one part of a job: claim its objects in the ledger, store its notes' texts, build its
 * segment (the HNSW graph on a worker thread, so the encoder keeps running), upload it create-only,
 * and commit it with the tombstones of the notes it supersedes.
 *
 * The commit is the manifest layer's create-only next version, with one extra check made against the
 * very manifest it derives from: an object whose ledger entry now names a newer version (or the
 * same version under another change) that this manifest already holds is dropped from the part, and
 * the part is rebuilt without it. Because the check reads the ledger after that manifest, and any
 * other commit takes a newer version (making this put fail and the loop re-check), an older version
 * can never be committed over a newer one, whatever order two jobs run in.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  applyChange,
  buildSegments,
  type ChunkMeta,
  CommitConflictError,
  CommitRetriesExhaustedError,
  IntegrityError,
  type Manifest,
  type ManifestStore,
  type NoteTextStore,
  type ObjectStore,
  PreconditionFailedError,
  SEGMENT_FILES,
  type SegmentDescriptor,
  segmentKey,
} from '@cohort/index';
import { PartCommitError } from './errors.ts';
import { type ObjectRef, objectIdentity } from './events.ts';
import { entryIsNewer, type LedgerRead, type ObjectLedger, sameVersion } from './ledger.ts';

/** A note ready to commit: its chunks, their vectors and its text. */
export interface EncodedNote {
  readonly objectId: string;
  readonly noteId: string;
  readonly text: string;
  readonly chunks: readonly ChunkMeta[];
  /** One L2-normalized vector per chunk. */
  readonly vectors: readonly Float32Array[];
}

/** An object (some or all of whose notes are) in a part. */
export interface PartObject {
  readonly ref: ObjectRef;
  /** True when the part holds the object's last note (its ledger entry is written with this part). */
  readonly complete: boolean;
  /** Every note of the object in this job (earlier parts included), for its ledger entry. Default: those in the part. */
  readonly noteIds?: readonly string[];
  /** Chunks of those notes. Default: those in the part. */
  readonly chunks?: number;
}

/** What a part commit did. */
export interface PartResult {
  readonly changeId: string;
  /** False when the change had been committed before (a retried job). */
  readonly applied: boolean;
  readonly notes: number;
  readonly chunks: number;
  /** Objects dropped because a newer version (or the same one, by another job) is indexed. */
  readonly superseded: readonly ObjectRef[];
  readonly buildMs: number;
  readonly uploadMs: number;
  readonly commitMs: number;
}

/** Settings of {@link commitPart}. */
export interface PartCommitContext {
  readonly jobId: string;
  readonly store: ObjectStore;
  readonly manifests: ManifestStore;
  readonly ledger: ObjectLedger;
  readonly texts: NoteTextStore;
  readonly modelFingerprint: string;
  readonly dims: number;
  readonly M?: number;
  readonly efConstruction?: number;
  readonly workDir: string;
  /** Called after the segment is uploaded, just before the commit loop (tests pause jobs here). */
  readonly beforeCommit?: (changeId: string) => Promise<void>;
}

/** The change id of a part: the job id and a hash of which notes of which object versions it holds. */
export function partChangeId(
  jobId: string,
  objects: readonly PartObject[],
  notes: readonly EncodedNote[],
): string {
  const hash = createHash('sha256');
  for (const o of objects) {
    hash.update(
      JSON.stringify([
        objectIdentity(o.ref),
        o.ref.versionId ?? null,
        o.ref.etag ?? null,
        o.ref.sequencer ?? null,
        o.complete,
      ]),
    );
  }
  for (const n of notes) hash.update(`\n${n.objectId}\t${n.noteId}`);
  return `embed/${jobId}/${hash.digest('hex').slice(0, 32)}`;
}

async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!);
    }),
  );
}

/** Whether `read` (another change's entry) already holds this object at our version or a newer one, committed in `manifest`. */
function heldElsewhere(
  read: LedgerRead | undefined,
  ref: ObjectRef,
  changeId: string,
  manifest: Manifest | undefined,
): boolean {
  if (!read || read.entry.changeId === changeId) return false;
  if (!(entryIsNewer(read.entry, ref) || sameVersion(read.entry, ref))) return false;
  return manifest?.commits.includes(read.entry.changeId) ?? false;
}

/**
 * Commits one part; see the module comment. Idempotent: a part whose change id is committed is a
 * no-op, and a rebuilt segment has the same content address as before.
 * @throws PartCommitError when the index holds another model, or the commit keeps losing races
 */
export async function commitPart(
  ctx: PartCommitContext,
  objects: readonly PartObject[],
  allNotes: readonly EncodedNote[],
): Promise<PartResult> {
  const changeId = partChangeId(ctx.jobId, objects, allNotes);
  const dropped = new Set<string>();
  const superseded: ObjectRef[] = [];
  let buildMs = 0;
  let uploadMs = 0;
  let commitMs = 0;
  const started = await ctx.manifests.latest();
  if (started?.commits.includes(changeId)) {
    return { changeId, applied: false, notes: 0, chunks: 0, superseded, buildMs, uploadMs, commitMs };
  }
  for (;;) {
    // 1. Claim complete objects in the ledger; drop any whose newer version is indexed or claimed.
    const tombstones = new Set<string>();
    const kept = objects.filter((o) => !dropped.has(objectIdentity(o.ref)));
    const base = await ctx.manifests.latest();
    for (const o of kept) {
      const id = objectIdentity(o.ref);
      const noteIds = o.noteIds ?? allNotes.filter((n) => n.objectId === id).map((n) => n.noteId);
      let previous: readonly string[] = [];
      for (;;) {
        const read = await ctx.ledger.read(o.ref);
        if (
          read &&
          read.entry.changeId !== changeId &&
          (entryIsNewer(read.entry, o.ref) || heldElsewhere(read, o.ref, changeId, base))
        ) {
          dropped.add(id);
          superseded.push(o.ref);
          break;
        }
        // The notes of the version this one replaces die with this commit (a note a new version of a
        // file no longer holds leaves the index). Taken from the last read only: an object dropped
        // on a later read must not tombstone anything.
        // A claim that never committed (a crashed attempt) passes on what it was to replace.
        previous = !read
          ? []
          : read.entry.changeId === changeId
            ? (read.entry.replaces ?? [])
            : [...new Set([...read.entry.noteIds, ...(read.entry.replaces ?? [])])];
        if (!o.complete || read?.entry.changeId === changeId) break;
        const chunks =
          o.chunks ?? allNotes.filter((n) => n.objectId === id).reduce((s, n) => s + n.chunks.length, 0);
        const swapped = await ctx.ledger.swap(read, {
          ...(o.ref.bucket ? { bucket: o.ref.bucket } : {}),
          key: o.ref.key,
          ...(o.ref.versionId ? { versionId: o.ref.versionId } : {}),
          ...(o.ref.etag ? { etag: o.ref.etag } : {}),
          ...(o.ref.sequencer ? { sequencer: o.ref.sequencer } : {}),
          changeId,
          jobId: ctx.jobId,
          noteIds: [...new Set(noteIds)],
          ...(previous.length ? { replaces: previous } : {}),
          chunks,
          updatedAt: new Date().toISOString(),
        });
        if (swapped) break;
      }
      if (!dropped.has(id)) for (const n of previous) tombstones.add(n);
    }
    const notes = allNotes.filter((n) => !dropped.has(n.objectId));
    for (const n of notes) tombstones.add(n.noteId);
    const chunks = notes.flatMap((n) => n.chunks);
    // 2. Texts first: a chunk is never searchable before its snippet can be shown.
    let t0 = performance.now();
    await mapLimit(notes, 16, (n) => ctx.texts.put(n.noteId, n.chunks[0]?.source, n.text));
    uploadMs += performance.now() - t0;
    // 3. The segment, built off the main thread, uploaded create-only.
    let segment: { id: string; count: number; sha256: string } | undefined;
    if (chunks.length > 0) {
      await mkdir(ctx.workDir, { recursive: true });
      const dir = await mkdtemp(join(ctx.workDir, 'cohort-part-'));
      try {
        const b0 = performance.now();
        const [descriptor] = await buildSegments(
          { vectors: notes.flatMap((n) => n.vectors), chunks },
          {
            dir,
            dims: ctx.dims,
            modelFingerprint: ctx.modelFingerprint,
            workers: 1,
            segmentSize: chunks.length,
            ...(ctx.M === undefined ? {} : { M: ctx.M }),
            ...(ctx.efConstruction === undefined ? {} : { efConstruction: ctx.efConstruction }),
          },
        );
        buildMs += performance.now() - b0;
        const u0 = performance.now();
        segment = await uploadSegment(ctx.store, descriptor!, join(dir, '0'));
        uploadMs += performance.now() - u0;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    await ctx.beforeCommit?.(changeId);
    // 4. Commit, re-checking the ledger against the exact manifest the commit derives from.
    t0 = performance.now();
    const done = (applied: boolean) => {
      commitMs += performance.now() - t0;
      return {
        changeId,
        applied,
        notes: notes.length,
        chunks: chunks.length,
        superseded,
        buildMs,
        uploadMs,
        commitMs,
      };
    };
    let rebuild = false;
    for (let attempt = 0; attempt < 200 && !rebuild; attempt++) {
      const base = await ctx.manifests.latest();
      if (base?.commits.includes(changeId)) return done(false);
      for (const o of kept) {
        if (dropped.has(objectIdentity(o.ref))) continue;
        if (heldElsewhere(await ctx.ledger.read(o.ref), o.ref, changeId, base)) {
          dropped.add(objectIdentity(o.ref));
          superseded.push(o.ref);
          rebuild = true;
        }
      }
      if (rebuild) break;
      let next: Manifest;
      try {
        next = applyChange(base, {
          id: changeId,
          ...(segment
            ? { addSegments: [segment], modelFingerprint: ctx.modelFingerprint, dims: ctx.dims }
            : {}),
          ...(tombstones.size ? { tombstoneNotes: [...tombstones] } : {}),
        });
      } catch (error) {
        if (error instanceof CommitConflictError) throw new PartCommitError(error.message, { cause: error });
        throw error;
      }
      try {
        await ctx.store.put(ctx.manifests.keyOf(next.version), JSON.stringify(next), {
          ifNoneMatch: '*',
          contentType: 'application/json',
        });
        return done(true);
      } catch (error) {
        if (!(error instanceof PreconditionFailedError)) throw error;
        const delay = Math.min(1000, 5 * 2 ** Math.min(attempt, 8));
        await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
      }
    }
    commitMs += performance.now() - t0;
    if (!rebuild)
      // Transient by nature: the job exits 75 for it (see job-main), and Batch retries.
      throw new PartCommitError(`part ${changeId} lost the race for the next manifest version 200 times`, {
        cause: new CommitRetriesExhaustedError(`lost 200 races for the next manifest version`),
      });
  }
}

/** Uploads a built segment's files create-only, `segment.json` last; returns its manifest entry. */
async function uploadSegment(
  store: ObjectStore,
  d: SegmentDescriptor,
  dir: string,
): Promise<{ id: string; count: number; sha256: string }> {
  const putOnce = async (file: string, expected: string) => {
    const key = segmentKey(d.id, file);
    try {
      await store.putFile(key, join(dir, file), { ifNoneMatch: '*' });
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
      // Content addressing: a file already there must hold the same bytes.
      const stored = createHash('sha256')
        .update(await store.get(key))
        .digest('hex');
      if (stored !== expected) {
        throw new IntegrityError(`segment ${d.id}: stored ${file} differs from the one built`, {
          cause: error,
        });
      }
    }
  };
  await Promise.all(
    ([SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks] as const).map((f) =>
      putOnce(f, d.files[f].sha256),
    ),
  );
  const descriptorBytes = await readFile(join(dir, SEGMENT_FILES.descriptor));
  const sha = createHash('sha256').update(descriptorBytes).digest('hex');
  await putOnce(SEGMENT_FILES.descriptor, sha);
  return { id: d.id, count: d.count, sha256: sha };
}
