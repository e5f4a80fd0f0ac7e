import {
  CommitConflictError,
  CommitRetriesExhaustedError,
  IntegrityError,
  PreconditionFailedError,
} from './errors.ts';
import type { ObjectStore } from './store/types.ts';

/** Format tag of manifests; bumped when the layout changes incompatibly. */
export const MANIFEST_FORMAT = 'cohort-manifest/1';

/** A live segment as a manifest lists it. */
export interface ManifestSegment {
  /** Content address of the segment (its directory under `segments/`). */
  readonly id: string;
  /** Chunks in the segment. */
  readonly count: number;
  /** sha256 of the segment's `segment.json`, checked when the segment is loaded. */
  readonly sha256: string;
  /**
   * Manifest version whose tombstones the segment's chunks are newer than: the version that added
   * it, or for a compacted segment the newest `addedIn` of the segments it replaced (so that a
   * compaction never revives a chunk that a concurrent delete tombstoned).
   */
  readonly addedIn: number;
}

/**
 * A note deleted or superseded at a version: its chunks in segments with `addedIn` below
 * `version` are dead. A re-ingested note's new segment is added in the same commit as its
 * tombstone, so its `addedIn` equals `version` and it stays live.
 */
export interface Tombstone {
  readonly noteId: string;
  readonly version: number;
}

/** One version of the index. Never overwritten: each commit writes the next version, create-only. */
export interface Manifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: number;
  /** The version this one was derived from (version − 1), null for the first. */
  readonly parent: number | null;
  readonly createdAt: string;
  /** Model fingerprint every segment was built with; set by the first commit that adds a segment. */
  readonly modelFingerprint: string | null;
  readonly dims: number | null;
  readonly segments: readonly ManifestSegment[];
  /** The newest tombstone of each note. */
  readonly tombstones: readonly Tombstone[];
  /** Ids of the changes applied so far, so that a retried job's commit is a no-op. */
  readonly commits: readonly string[];
}

/** A change to commit. Adding segments and tombstones commutes, so a change rebases onto any newer version. */
export interface ManifestChange {
  /** Idempotency key (e.g. the job id): a change whose id a manifest already lists is not applied again. */
  readonly id: string;
  /** Model fingerprint and dimensions of the added segments; must match the index's. */
  readonly modelFingerprint?: string;
  readonly dims?: number;
  /** Segments to add; `addedIn` defaults to the new version. */
  readonly addSegments?: readonly (Omit<ManifestSegment, 'addedIn'> & { readonly addedIn?: number })[];
  /** Segments to remove (compaction); each must still be live. */
  readonly removeSegments?: readonly string[];
  /** Notes whose earlier chunks die at this version (deletes, and re-ingested notes). */
  readonly tombstoneNotes?: readonly string[];
}

/**
 * Derives version `base.version + 1` from `base` (or version 1 from nothing).
 * @throws CommitConflictError when a removed segment is not live in `base`, or the fingerprint or dims differ
 */
export function applyChange(base: Manifest | undefined, change: ManifestChange, now = new Date()): Manifest {
  const version = (base?.version ?? 0) + 1;
  const fingerprint = base?.modelFingerprint ?? null;
  const dims = base?.dims ?? null;
  if (
    change.modelFingerprint !== undefined &&
    fingerprint !== null &&
    change.modelFingerprint !== fingerprint
  ) {
    throw new CommitConflictError(
      `change ${change.id} was built with model ${change.modelFingerprint}; the index holds ${fingerprint}`,
    );
  }
  if (change.dims !== undefined && dims !== null && change.dims !== dims) {
    throw new CommitConflictError(`change ${change.id} has ${change.dims} dimensions; the index has ${dims}`);
  }
  const removed = new Set(change.removeSegments ?? []);
  const live = base?.segments ?? [];
  for (const id of removed) {
    if (!live.some((s) => s.id === id)) {
      throw new CommitConflictError(`change ${change.id} removes segment ${id}, which is no longer live`);
    }
  }
  const segments = live.filter((s) => !removed.has(s.id));
  for (const s of change.addSegments ?? []) {
    if (!segments.some((existing) => existing.id === s.id))
      segments.push({ ...s, addedIn: s.addedIn ?? version });
  }
  const tombstones = new Map((base?.tombstones ?? []).map((t) => [t.noteId, t]));
  for (const noteId of change.tombstoneNotes ?? []) tombstones.set(noteId, { noteId, version });
  const added = (change.addSegments?.length ?? 0) > 0;
  return {
    format: MANIFEST_FORMAT,
    version,
    parent: base?.version ?? null,
    createdAt: now.toISOString(),
    modelFingerprint: fingerprint ?? (added ? (change.modelFingerprint ?? null) : null),
    dims: dims ?? (added ? (change.dims ?? null) : null),
    segments,
    tombstones: [...tombstones.values()],
    commits: [...(base?.commits ?? []), change.id],
  };
}

/** Whether a chunk of `noteId` in a segment added at `addedIn` is live under `manifest`'s tombstones. */
export function isChunkLive(
  tombstones: ReadonlyMap<string, number>,
  noteId: string,
  addedIn: number,
): boolean {
  const deletedAt = tombstones.get(noteId);
  return deletedAt === undefined || addedIn >= deletedAt;
}

/** Options of {@link ManifestStore}. */
export interface ManifestStoreOptions {
  /** Key prefix of manifests. Default `manifests/`. */
  readonly prefix?: string;
  /** Attempts before a commit gives up. Default 100. */
  readonly maxAttempts?: number;
  /** First backoff after a lost race, doubled each time with jitter, capped at 1 s. Default 5 ms. */
  readonly baseDelayMs?: number;
}

/** Result of {@link ManifestStore.commit}. */
export interface CommitResult {
  readonly manifest: Manifest;
  /** False when the change had been committed already (a retried job): nothing was written. */
  readonly applied: boolean;
  /** Races lost (and rebased over) before this commit landed. */
  readonly retries: number;
}

/**
 * Versioned manifests in an object store: `manifests/0000000001.json`, … Each commit writes the
 * next version create-only (`If-None-Match: *`, or `link` on a directory), so two writers can never
 * both take a version; the loser re-reads the newest version, re-applies its change and retries.
 * A commit therefore lands whole or not at all, and nothing a concurrent commit added is lost.
 * Readers take the newest version.
 */
export class ManifestStore {
  private readonly prefix: string;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;

  constructor(
    private readonly store: ObjectStore,
    options: ManifestStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? 'manifests/';
    this.maxAttempts = options.maxAttempts ?? 100;
    this.baseDelayMs = options.baseDelayMs ?? 5;
  }

  /** Key of a version's manifest; zero-padded so that keys sort by version. */
  keyOf(version: number): string {
    return `${this.prefix}${String(version).padStart(10, '0')}.json`;
  }

  /** Versions present, ascending. */
  async versions(): Promise<number[]> {
    const versions: number[] = [];
    for await (const o of this.store.list(this.prefix)) {
      const m = /^(\d{10})\.json$/.exec(o.key.slice(this.prefix.length));
      if (m) versions.push(Number(m[1]));
    }
    return versions.sort((a, b) => a - b);
  }

  /** The newest manifest, or undefined for an empty index. */
  async latest(): Promise<Manifest | undefined> {
    const versions = await this.versions();
    const newest = versions.at(-1);
    return newest === undefined ? undefined : this.read(newest);
  }

  /** One version. @throws IntegrityError when it does not parse or names another version */
  async read(version: number): Promise<Manifest> {
    const key = this.keyOf(version);
    const bytes = await this.store.get(key);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(bytes)) as Manifest;
    } catch (cause) {
      throw new IntegrityError(`${key} is not valid JSON`, { cause });
    }
    if (
      manifest.format !== MANIFEST_FORMAT ||
      manifest.version !== version ||
      !Array.isArray(manifest.segments)
    ) {
      throw new IntegrityError(`${key} is not a ${MANIFEST_FORMAT} manifest of version ${version}`);
    }
    return manifest;
  }

  /**
   * Commits a change as the next version, rebasing over concurrent commits until it lands.
   * @throws CommitConflictError when the change cannot apply to the newest version
   * @throws CommitRetriesExhaustedError after `maxAttempts` lost races
   */
  async commit(change: ManifestChange): Promise<CommitResult> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const base = await this.latest();
      if (base?.commits.includes(change.id)) return { manifest: base, applied: false, retries: attempt };
      const next = applyChange(base, change);
      try {
        await this.store.put(this.keyOf(next.version), JSON.stringify(next), {
          ifNoneMatch: '*',
          contentType: 'application/json',
        });
        return { manifest: next, applied: true, retries: attempt };
      } catch (error) {
        if (!(error instanceof PreconditionFailedError)) throw error;
        const delay = Math.min(1000, this.baseDelayMs * 2 ** Math.min(attempt, 8));
        await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
      }
    }
    throw new CommitRetriesExhaustedError(
      `change ${change.id} lost the race for the next version ${this.maxAttempts} times`,
    );
  }
}
