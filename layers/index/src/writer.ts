/**
 * Writing to the index: build a segment locally, upload its files (create-only, content-addressed),
 * then commit it to the manifest in one step, together with the tombstones of the notes it
 * supersedes. Deletes commit tombstones only. Every call is idempotent by its change id.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError, PreconditionFailedError } from './errors.ts';
import {
  type CommitResult,
  type ManifestSegment,
  ManifestStore,
  type ManifestStoreOptions,
} from './manifest.ts';
import { buildSegment } from './segment/build.ts';
import { sha256 } from './segment/hash.ts';
import { SEGMENT_FILES, type SegmentDescriptor, type SegmentInput } from './segment/types.ts';
import type { ObjectStore } from './store/types.ts';

/** Key prefix under which segments are stored: `segments/<id>/<file>`. */
export const SEGMENTS_PREFIX = 'segments/';

/** The object key of one file of a segment. */
export function segmentKey(id: string, file: string): string {
  return `${SEGMENTS_PREFIX}${id}/${file}`;
}

/** Options of {@link IndexWriter}. */
export interface IndexWriterOptions {
  /** Fingerprint of the encoder model that produced the vectors; the index refuses any other. */
  readonly modelFingerprint: string;
  /** Vector dimensions. */
  readonly dims: number;
  /** Local scratch directory where segments are built before upload. Default `os.tmpdir()`. */
  readonly workDir?: string;
  /** HNSW links per node. Default 16. */
  readonly M?: number;
  /** HNSW candidate list size while building. Default 200. */
  readonly efConstruction?: number;
  /** Options of the manifest store (key prefix, retries). */
  readonly manifest?: ManifestStoreOptions;
}

/** Options of {@link IndexWriter.addSegment}. */
export interface AddSegmentOptions {
  /** Idempotency key of the change (e.g. the job id): a change already committed is not applied again. */
  readonly changeId: string;
  /**
   * Notes whose earlier chunks die in the same commit (re-ingest: the note ids in this segment). The
   * new segment is added at the tombstones' version, so its own chunks stay live. Default none.
   */
  readonly tombstoneNotes?: readonly string[];
}

/** Result of {@link IndexWriter.addSegment}. */
export interface AddSegmentResult extends CommitResult {
  /** The segment as committed; undefined when the change had been committed before (nothing was built). */
  readonly segment?: ManifestSegment;
  /** The built segment's descriptor; undefined when nothing was built. */
  readonly descriptor?: SegmentDescriptor;
}

/** Lower-case hex sha256 of a stored object, streamed. */
async function storedSha256(store: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Adds segments and tombstones to an index in an {@link ObjectStore}. */
export class IndexWriter {
  /** The manifest store the writer commits through. */
  readonly manifests: ManifestStore;
  private readonly workDir: string;

  /**
   * @param store where the index lives
   * @param options see {@link IndexWriterOptions}
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly options: IndexWriterOptions,
  ) {
    if (!options.modelFingerprint) throw new RangeError('modelFingerprint is required');
    if (!Number.isInteger(options.dims) || options.dims < 1) {
      throw new RangeError(`dims must be a positive integer, got ${options.dims}`);
    }
    this.manifests = new ManifestStore(store, options.manifest);
    this.workDir = options.workDir ?? tmpdir();
  }

  /**
   * Builds one segment from `input`, uploads it under `segments/<id>/`, and commits it (with
   * `tombstoneNotes`) as the next manifest version. When the manifest already lists `changeId`,
   * nothing is built or written. An identical segment already stored (same content address) is
   * reused; a stored file with the segment's key but other bytes is an {@link IntegrityError}.
   * @throws InvalidVectorError for a bad vector; CommitConflictError when the index holds another model or dims
   */
  async addSegment(input: SegmentInput, options: AddSegmentOptions): Promise<AddSegmentResult> {
    const { changeId } = options;
    const before = await this.manifests.latest();
    if (before?.commits.includes(changeId)) return { manifest: before, applied: false, retries: 0 };
    await mkdir(this.workDir, { recursive: true });
    const dir = await mkdtemp(join(this.workDir, 'cohort-segment-'));
    try {
      const descriptor = await buildSegment(input, {
        dir,
        dims: this.options.dims,
        modelFingerprint: this.options.modelFingerprint,
        ...(this.options.M === undefined ? {} : { M: this.options.M }),
        ...(this.options.efConstruction === undefined ? {} : { efConstruction: this.options.efConstruction }),
      });
      const descriptorBytes = await readFile(join(dir, SEGMENT_FILES.descriptor));
      await this.upload(descriptor, dir, descriptorBytes);
      const entry = { id: descriptor.id, count: descriptor.count, sha256: sha256(descriptorBytes) };
      const result = await this.manifests.commit({
        id: changeId,
        addSegments: [entry],
        modelFingerprint: this.options.modelFingerprint,
        dims: this.options.dims,
        ...(options.tombstoneNotes?.length ? { tombstoneNotes: [...new Set(options.tombstoneNotes)] } : {}),
      });
      const segment = result.manifest.segments.find((s) => s.id === descriptor.id);
      return { ...result, descriptor, ...(segment ? { segment } : {}) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Deletes notes: commits a tombstone for each, so no chunk of theirs in a segment added before
   * this commit is returned again. Idempotent by `changeId`.
   */
  async deleteNotes(noteIds: readonly string[], changeId: string): Promise<CommitResult> {
    return this.manifests.commit({ id: changeId, tombstoneNotes: [...new Set(noteIds)] });
  }

  /** Uploads the data files, then `segment.json` last (its presence marks a complete segment). */
  private async upload(d: SegmentDescriptor, dir: string, descriptorBytes: Uint8Array): Promise<void> {
    const data = [SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks] as const;
    await Promise.all(data.map((file) => this.putOnce(d.id, file, join(dir, file), d.files[file].sha256)));
    await this.putOnce(
      d.id,
      SEGMENT_FILES.descriptor,
      join(dir, SEGMENT_FILES.descriptor),
      sha256(descriptorBytes),
    );
  }

  /** Create-only put; an object already there must hold the same bytes (content addressing). */
  private async putOnce(id: string, file: string, path: string, expectedSha256: string): Promise<void> {
    const key = segmentKey(id, file);
    try {
      await this.store.putFile(key, path, { ifNoneMatch: '*' });
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
      const actual = await storedSha256(this.store, key);
      if (actual !== expectedSha256) {
        throw new IntegrityError(
          `segment ${id}: stored ${file} has sha256 ${actual}, expected ${expectedSha256} (corrupt store?)`,
          { cause: error },
        );
      }
      // Rewrite the same bytes so the copy is young again: garbage collection spares files written
      // within its grace period, and this one is about to be committed (see gc.ts).
      await this.store.putFile(key, path);
    }
  }
}
