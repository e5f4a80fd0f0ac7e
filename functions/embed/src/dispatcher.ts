/**
 * The dispatcher: turns a batch of SQS messages (each an EventBridge S3 event) into job specs and
 * batch jobs, and commits deletions directly. Messages are handled independently where they can
 * be: the ids of messages whose work failed are returned for SQS to redeliver, and only those.
 */
import { createHash } from 'node:crypto';
import { ManifestStore, NoteTextStore, type ObjectStore } from '@cohort/index';
import type { GroupingLimits } from './config.ts';
import {
  compareSequencers,
  dedupeEvents,
  eventIdentity,
  inScope,
  type ObjectEvent,
  objectIdentity,
  parseEventBody,
} from './events.ts';
import type { JobLogger } from './job.ts';
import { ObjectLedger } from './ledger.ts';
import { groupObjects, jobSpecKey, makeJobSpec, writeJobSpec } from './spec.ts';
import type { JobSubmitter } from './submitter.ts';

/** An SQS message as the dispatcher needs it. */
export interface QueueMessage {
  readonly messageId: string;
  readonly body: string;
}

/** Options of {@link Dispatcher}. */
export interface DispatcherOptions {
  /** The index store. */
  readonly store: ObjectStore;
  /** The index store's URI, written into job specs (`s3://bucket/prefix`). */
  readonly indexUri: string;
  /** Events of other buckets are ignored. */
  readonly notesBucket: string;
  /** Events of keys outside this prefix are ignored. Default `''` (all). */
  readonly notesPrefix?: string;
  readonly limits: GroupingLimits;
  readonly submitter: JobSubmitter;
  /** Logger (ids and counts only). Default: none. */
  readonly logger?: JobLogger;
}

/** What one {@link Dispatcher.handle} call did. */
export interface DispatchResult {
  /** Messages to redeliver (SQS partial batch response). */
  readonly batchItemFailures: { readonly itemIdentifier: string }[];
  /** Job ids submitted. */
  readonly jobs: string[];
  /** Job ids whose spec and submission already existed (a redelivered batch). */
  readonly alreadySubmitted: string[];
  /** Objects whose deletion was committed. */
  readonly deleted: number;
  /** Messages ignored: other buckets or prefixes, event types not acted on. */
  readonly ignored: number;
  /** Duplicate events dropped. */
  readonly duplicates: number;
}

/** The change id of one deletion: bucket, key and sequencer, so a redelivered event is a no-op. */
export function deleteChangeId(e: ObjectEvent): string {
  const hash = createHash('sha256').update(eventIdentity(e)).digest('hex').slice(0, 32);
  return `delete/${hash}`;
}

/** Handles batches of S3 events; see the module comment. */
export class Dispatcher {
  private readonly ledger: ObjectLedger;
  private readonly manifests: ManifestStore;

  /** @param options see {@link DispatcherOptions} */
  constructor(private readonly options: DispatcherOptions) {
    this.ledger = new ObjectLedger(options.store);
    this.manifests = new ManifestStore(options.store);
  }

  /** Handles one SQS batch. Never throws for one message's failure: it is reported in `batchItemFailures`. */
  async handle(messages: readonly QueueMessage[]): Promise<DispatchResult> {
    const { logger } = this.options;
    const failures = new Set<string>();
    let ignored = 0;
    const parsed: { event: ObjectEvent; messageId: string }[] = [];
    for (const m of messages) {
      try {
        const event = parseEventBody(m.body);
        if (!event || !inScope(event.object, this.options.notesBucket, this.options.notesPrefix ?? '')) {
          ignored++;
          continue;
        }
        parsed.push({ event, messageId: m.messageId });
      } catch (error) {
        logger?.warn('unreadable message', { messageId: m.messageId, error: (error as Error).message });
        failures.add(m.messageId);
      }
    }
    // Every message that carried an event, so that a failure redelivers all its copies.
    const carriers = new Map<string, string[]>();
    for (const p of parsed) {
      const id = eventIdentity(p.event);
      carriers.set(id, [...(carriers.get(id) ?? []), p.messageId]);
    }
    const unique = dedupeEvents(parsed);
    const duplicates = parsed.length - unique.length;
    const failEvent = (e: ObjectEvent) => {
      for (const id of carriers.get(eventIdentity(e)) ?? []) failures.add(id);
    };

    // Per key, only the newest event matters: an older create is superseded, by a newer create or a delete.
    const newest = new Map<string, ObjectEvent>();
    const olderOf = new Map<string, ObjectEvent[]>();
    for (const { event } of unique) {
      const key = objectIdentity(event.object);
      const current = newest.get(key);
      if (!current || compareSequencers(event.object.sequencer, current.object.sequencer) > 0) {
        if (current) olderOf.set(key, [...(olderOf.get(key) ?? []), current]);
        newest.set(key, event);
      } else {
        olderOf.set(key, [...(olderOf.get(key) ?? []), event]);
      }
    }

    let deleted = 0;
    const creates: ObjectEvent[] = [];
    for (const [key, event] of newest) {
      if (event.type === 'created') {
        creates.push(event);
        continue;
      }
      try {
        if (await this.commitDelete(event)) deleted++;
      } catch (error) {
        logger?.warn('delete failed', { key: event.object.key, error: (error as Error).message });
        failEvent(event);
        for (const older of olderOf.get(key) ?? []) failEvent(older);
      }
    }

    const jobs: string[] = [];
    const alreadySubmitted: string[] = [];
    for (const group of groupObjects(
      creates.map((e) => e.object),
      this.options.limits,
    )) {
      const spec = makeJobSpec(this.options.indexUri, group);
      try {
        const fresh = await writeJobSpec(this.options.store, spec);
        const marker = `${jobSpecKey(spec.id)}.submitted`;
        if (!fresh && (await this.options.store.head(marker))) {
          alreadySubmitted.push(spec.id);
          continue;
        }
        const { submittedId } = await this.options.submitter.submit({
          jobId: spec.id,
          specUri: `${this.options.indexUri.replace(/\/+$/, '')}/${jobSpecKey(spec.id)}`,
        });
        await this.options.store.put(marker, JSON.stringify({ submittedId, at: new Date().toISOString() }), {
          contentType: 'application/json',
        });
        jobs.push(spec.id);
        logger?.info('embed job submitted', { jobId: spec.id, submittedId, objects: group.length });
      } catch (error) {
        logger?.warn('job dispatch failed', { jobId: spec.id, error: (error as Error).message });
        for (const o of group) {
          const key = objectIdentity(o);
          const event = newest.get(key);
          if (event) failEvent(event);
          for (const older of olderOf.get(key) ?? []) failEvent(older);
        }
      }
    }
    logger?.info('dispatched', {
      messages: messages.length,
      jobs: jobs.length,
      deleted,
      ignored,
      duplicates,
      failures: failures.size,
    });
    return {
      batchItemFailures: [...failures].map((itemIdentifier) => ({ itemIdentifier })),
      jobs,
      alreadySubmitted,
      deleted,
      ignored,
      duplicates,
    };
  }

  /**
   * Commits a deletion: marks the object deleted in the ledger (so a late job for an older version
   * does nothing) and tombstones the notes its indexed version produced. Returns false when the
   * ledger already holds a newer version (the delete is stale).
   */
  private async commitDelete(event: ObjectEvent): Promise<boolean> {
    const changeId = deleteChangeId(event);
    for (;;) {
      const read = await this.ledger.read(event.object);
      if (read && compareSequencers(read.entry.sequencer, event.object.sequencer) > 0) return false;
      const noteIds = read?.entry.changeId === changeId ? read.entry.noteIds : (read?.entry.noteIds ?? []);
      if (read?.entry.changeId !== changeId) {
        const swapped = await this.ledger.swap(read, {
          ...(event.object.bucket ? { bucket: event.object.bucket } : {}),
          key: event.object.key,
          ...(event.object.versionId ? { versionId: event.object.versionId } : {}),
          ...(event.object.sequencer ? { sequencer: event.object.sequencer } : {}),
          changeId,
          jobId: 'dispatcher',
          // The notes this delete tombstones, kept so that a redelivered event tombstones them again.
          noteIds,
          chunks: 0,
          deleted: true,
          updatedAt: new Date().toISOString(),
        });
        if (!swapped) continue;
      }
      await this.manifests.commit({
        id: changeId,
        ...(noteIds.length ? { tombstoneNotes: [...noteIds] } : {}),
      });
      // The notes' texts go with them (PHI is kept no longer than it is indexed).
      const texts = new NoteTextStore(this.options.store, { cacheEntries: 0 });
      for (const noteId of noteIds) await texts.deleteNote(noteId);
      return true;
    }
  }
}
