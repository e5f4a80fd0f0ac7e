/**
 * Quarantine: every record or file that cannot be indexed is written to the index store under
 * `quarantine/<job id>/<hash>.json` with its source and reason. The key is a hash of the source and
 * reason, so a retried job rewrites the same objects instead of adding more. Source objects are
 * never modified or deleted. No note text is written: reasons and details are the readers'.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '@cohort/index';
import type { NoteSource, QuarantinedRecord } from '@cohort/notes';

/** Key prefix of quarantined records in the index store. */
export const QUARANTINE_PREFIX = 'quarantine/';

/** One quarantined record as stored and reported. */
export interface QuarantineEntry {
  readonly jobId: string;
  readonly source: NoteSource & { readonly sequencer?: string };
  readonly reason: string;
  readonly detail?: string;
}

/** The key of a quarantined record. */
export function quarantineKey(jobId: string, record: Pick<QuarantineEntry, 'source' | 'reason'>): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([record.source, record.reason]))
    .digest('hex')
    .slice(0, 32);
  return `${QUARANTINE_PREFIX}${jobId}/${hash}.json`;
}

/** Writes one quarantined record (idempotent). */
export async function writeQuarantine(
  store: ObjectStore,
  jobId: string,
  record: QuarantinedRecord & { readonly source: QuarantineEntry['source'] },
): Promise<QuarantineEntry> {
  const entry: QuarantineEntry = {
    jobId,
    source: record.source,
    reason: record.reason,
    ...(record.detail === undefined ? {} : { detail: record.detail }),
  };
  await store.put(quarantineKey(jobId, entry), JSON.stringify(entry), { contentType: 'application/json' });
  return entry;
}

/** Every quarantined record of a job, in key order. */
export async function listQuarantine(store: ObjectStore, jobId: string): Promise<QuarantineEntry[]> {
  const out: QuarantineEntry[] = [];
  for await (const o of store.list(`${QUARANTINE_PREFIX}${jobId}/`)) {
    out.push(JSON.parse(new TextDecoder().decode(await store.get(o.key))) as QuarantineEntry);
  }
  return out;
}
