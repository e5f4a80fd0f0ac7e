/**
 * Audit: every search leaves one record (who, when, a hash of the query, the filters, how many
 * patients came back, the manifest version) in an append-only store: an S3 prefix (encrypted, with
 * Object Lock or a deny-delete bucket policy in the CDK app) or a local directory. Records are
 * written create-only under a unique key and never rewritten. The query text itself is not stored,
 * only its sha256 (so an auditor holding a query can tell whether it was run); filters are stored
 * as given, since they are needed to reproduce a cohort.
 */
import { createHash, randomUUID } from 'node:crypto';
import { type ObjectStore, openStore } from '@cohort/index';
import type { SearchFilters } from './schemas.ts';

/** One audit record. */
export interface AuditRecord {
  readonly format: 'cohort-audit/1';
  /** Unique id; also the request id in logs. */
  readonly id: string;
  /** ISO 8601 time the search was answered. */
  readonly time: string;
  /** Caller identity (IAM principal ARN, JWT subject, or the local user). */
  readonly who: string;
  /** Where the identity came from. */
  readonly auth: 'iam' | 'jwt' | 'token' | 'local';
  /** Lower-case hex sha256 of the query text (UTF-8). */
  readonly queryHash: string;
  readonly filters: SearchFilters | null;
  readonly assertion: 'affirmed' | 'any';
  readonly k: number;
  readonly minScore: number | null;
  /** Whether this was a later page of an exhaustive search. */
  readonly page: boolean;
  /** Export format asked for. */
  readonly exportFormat: string;
  /** Patients in this answer. */
  readonly patientsReturned: number;
  /** Patients in the whole cohort (exhaustive mode: over every page). */
  readonly totalPatients: number;
  readonly manifestVersion: number;
  readonly modelFingerprint: string;
}

/** The sha256 of a query, as stored in audit records. */
export function queryHash(query: string): string {
  return createHash('sha256').update(query, 'utf8').digest('hex');
}

/** Where audit records go. */
export interface AuditSink {
  write(record: AuditRecord): Promise<void>;
}

/**
 * Audit records as one JSON object each in an {@link ObjectStore}:
 * `<yyyy>/<mm>/<dd>/<time>-<id>.json`, written create-only (`If-None-Match: *`), so a record can
 * neither be overwritten nor lost to a key collision.
 */
export class StoreAuditSink implements AuditSink {
  constructor(private readonly store: ObjectStore) {}

  /** An audit sink at a location: `s3://bucket/prefix/` or a directory. */
  static open(location: string): StoreAuditSink {
    return new StoreAuditSink(openStore(location));
  }

  async write(record: AuditRecord): Promise<void> {
    const day = record.time.slice(0, 10).replaceAll('-', '/');
    const stamp = record.time.replace(/[:.]/g, '');
    await this.store.put(`${day}/${stamp}-${record.id}.json`, `${JSON.stringify(record)}\n`, {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
  }
}

/** Builds a record's id. */
export function newAuditId(): string {
  return randomUUID();
}
