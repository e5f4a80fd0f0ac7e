/**
 * The object ledger: one small JSON object per source object (bucket and key) in the index store,
 * `ledger/objects/<sha256>.json`, saying which version of it the index holds (or is about to) and
 * which notes that version produced. It is the per-object checkpoint of the embed pipeline:
 *
 * - A version is *indexed* when its entry names that version and the entry's `changeId` is listed
 *   in the newest manifest's commits. A job skips such objects, so a retried or repeated job redoes
 *   nothing, and `cohort ingest` run twice changes nothing.
 * - Entries change only by compare-and-swap (`If-Match`), and never go back to an older version
 *   (by sequencer): a job holding an older version than the entry's drops it (superseded).
 * - A delete writes a `deleted` entry with its sequencer, so a late job for an older version of a
 *   deleted object does nothing.
 * - `noteIds` of the entry being replaced are tombstoned by the commit that replaces it, so a note
 *   that a new version of a CSV no longer holds leaves the index too.
 */
import { createHash } from 'node:crypto';
import { type ObjectStore, PreconditionFailedError } from '@cohort/index';
import { compareSequencers, type ObjectRef } from './events.ts';

/** Key prefix of ledger entries in the index store. */
export const LEDGER_PREFIX = 'ledger/objects/';

/** One ledger entry. */
export interface LedgerEntry {
  readonly bucket?: string;
  readonly key: string;
  readonly versionId?: string;
  readonly etag?: string;
  readonly sequencer?: string;
  /** The manifest change that indexes this version (or the delete's tombstones). */
  readonly changeId: string;
  /** Job that wrote the entry. */
  readonly jobId: string;
  /** Notes this version produced (empty for a deleted object or one that was quarantined whole). */
  readonly noteIds: readonly string[];
  /**
   * Notes of the version this entry replaced, which the entry's change tombstones: kept so that a
   * job that crashed after claiming and is re-run still tombstones them.
   */
  readonly replaces?: readonly string[];
  readonly chunks: number;
  readonly deleted?: boolean;
  readonly updatedAt: string;
}

/** An entry and its store etag (for compare-and-swap). */
export interface LedgerRead {
  readonly entry: LedgerEntry;
  readonly etag: string;
}

/** The ledger key of an object (all its versions). */
export function ledgerKey(o: Pick<ObjectRef, 'bucket' | 'key'>): string {
  const id = createHash('sha256')
    .update(`${o.bucket ?? ''}\n${o.key}`)
    .digest('hex');
  return `${LEDGER_PREFIX}${id}.json`;
}

/** Whether two refs name the same version: equal version ids when both have one, else equal etags. */
export function sameVersion(
  a: Pick<ObjectRef, 'versionId' | 'etag'>,
  b: Pick<ObjectRef, 'versionId' | 'etag'>,
): boolean {
  if (a.versionId !== undefined && b.versionId !== undefined) return a.versionId === b.versionId;
  return a.etag !== undefined && a.etag === b.etag;
}

/** Whether the entry's version is newer than `ref`'s (by sequencer). */
export function entryIsNewer(entry: LedgerEntry, ref: ObjectRef): boolean {
  return compareSequencers(entry.sequencer, ref.sequencer) > 0;
}

/** Reads and writes ledger entries. */
export class ObjectLedger {
  /** @param store the index store */
  constructor(private readonly store: ObjectStore) {}

  /** The entry of an object, or undefined when it has none. */
  async read(o: Pick<ObjectRef, 'bucket' | 'key'>): Promise<LedgerRead | undefined> {
    const key = ledgerKey(o);
    const info = await this.store.head(key);
    if (!info) return undefined;
    try {
      const bytes = await this.store.get(key);
      // Take the etag after the read would race a writer; re-head and retry until they agree.
      const again = await this.store.head(key);
      if (!again || again.etag !== info.etag) return this.read(o);
      return { entry: JSON.parse(new TextDecoder().decode(bytes)) as LedgerEntry, etag: info.etag };
    } catch (error) {
      // Deleted between head and get: no entry.
      if ((error as Error).name === 'ObjectNotFoundError') return undefined;
      throw error;
    }
  }

  /**
   * Replaces the entry read as `previous` (or creates one when there was none) by compare-and-swap.
   * Returns false when another writer changed it first: read again and decide again.
   */
  async swap(previous: LedgerRead | undefined, next: LedgerEntry): Promise<boolean> {
    try {
      await this.store.put(
        ledgerKey(next),
        JSON.stringify(next),
        previous
          ? { ifMatch: previous.etag, contentType: 'application/json' }
          : { ifNoneMatch: '*', contentType: 'application/json' },
      );
      return true;
    } catch (error) {
      if (error instanceof PreconditionFailedError) return false;
      throw error;
    }
  }
}
