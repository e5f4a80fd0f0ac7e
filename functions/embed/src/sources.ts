/**
 * Where a job reads source objects from: S3 (the notes bucket, by version) or local files. Either
 * way the notes layer's readers parse them; nothing here knows a note format.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { type ReadItem, readNotes, readNotesFromFile } from '@cohort/notes';
import { SourceReadError } from './errors.ts';
import type { ObjectRef } from './events.ts';

/** The result of opening one object version. */
export type OpenedObject =
  | { readonly status: 'ok'; readonly items: AsyncIterable<ReadItem> }
  /** The version is gone (deleted): a delete event takes care of the index. */
  | { readonly status: 'gone' }
  /** The key holds another version now, and this one cannot be read: a newer event will come. */
  | { readonly status: 'changed' };

/** Reads source objects. */
export interface ObjectSource {
  /**
   * Opens one object version for reading.
   * @throws SourceReadError for failures that are not the data's (network, permissions): the job fails and is retried
   */
  open(ref: ObjectRef): Promise<OpenedObject>;
}

/** Strips the quotes S3 puts around ETags. */
export function bareEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, '');
}

/** Reads objects from S3 with GetObject, by version id when the ref has one, else by etag (`If-Match`). */
export class S3ObjectSource implements ObjectSource {
  /** @param client the S3 client (region, credentials and endpoint configured) */
  constructor(private readonly client: S3Client) {}

  async open(ref: ObjectRef): Promise<OpenedObject> {
    if (!ref.bucket) throw new SourceReadError(`object ${ref.key} names no bucket`);
    let response: GetObjectCommandOutput;
    try {
      response = await this.client.send(
        new GetObjectCommand({
          Bucket: ref.bucket,
          Key: ref.key,
          ...(ref.versionId ? { VersionId: ref.versionId } : {}),
          ...(ref.etag && !ref.versionId ? { IfMatch: `"${bareEtag(ref.etag)}"` } : {}),
        }),
      );
    } catch (error) {
      const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
      const status = e.$metadata?.httpStatusCode;
      if (e.name === 'NoSuchKey' || e.name === 'NoSuchVersion' || status === 404) return { status: 'gone' };
      if (e.name === 'PreconditionFailed' || status === 412) return { status: 'changed' };
      throw new SourceReadError(`cannot read s3://${ref.bucket}/${ref.key}`, { cause: error });
    }
    // A server that ignores If-Match (an old S3-compatible one) still tells us the etag it served.
    if (!ref.versionId && ref.etag && bareEtag(response.ETag) !== bareEtag(ref.etag)) {
      (response.Body as { destroy?: () => void } | undefined)?.destroy?.();
      return { status: 'changed' };
    }
    const body = response.Body as AsyncIterable<Uint8Array>;
    return {
      status: 'ok',
      items: readNotes({
        body,
        key: ref.key,
        bucket: ref.bucket,
        ...(ref.versionId ? { versionId: ref.versionId } : {}),
        ...(ref.etag ? { etag: bareEtag(ref.etag)! } : {}),
        ...(response.Metadata ? { metadata: response.Metadata } : {}),
      }),
    };
  }
}

/** sha256 of a local file (its "etag" in local mode). */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A local file as an object version: etag = sha256 of its bytes, sequencer = mtime in ns (hex). */
export async function localObjectRef(path: string): Promise<ObjectRef> {
  const s = await stat(path, { bigint: true });
  return {
    key: path,
    etag: await fileSha256(path),
    sequencer: s.mtimeNs.toString(16).toUpperCase().padStart(16, '0'),
    size: Number(s.size),
    time: new Date(Number(s.mtimeMs)).toISOString(),
  };
}

/**
 * Reads local files (refs without a bucket; the key is the path), with the notes layer's sidecar
 * metadata (`<path>.meta.json`). A file whose bytes no longer hash to the ref's etag has changed.
 */
export class LocalFileSource implements ObjectSource {
  async open(ref: ObjectRef): Promise<OpenedObject> {
    if (ref.bucket) throw new SourceReadError(`object s3://${ref.bucket}/${ref.key} is not a local file`);
    let etag: string;
    try {
      etag = await fileSha256(ref.key);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'gone' };
      throw new SourceReadError(`cannot read ${ref.key}`, { cause: error });
    }
    if (ref.etag && etag !== ref.etag) return { status: 'changed' };
    return { status: 'ok', items: readNotesFromFile(ref.key) };
  }
}

/** Routes refs with a bucket to S3 and the others to local files. */
export class RoutingSource implements ObjectSource {
  /**
   * @param s3 source for refs with a bucket (default: none; such refs fail)
   * @param local source for local files (default {@link LocalFileSource})
   */
  constructor(
    private readonly s3?: ObjectSource,
    private readonly local: ObjectSource = new LocalFileSource(),
  ) {}

  open(ref: ObjectRef): Promise<OpenedObject> {
    if (!ref.bucket) return this.local.open(ref);
    if (!this.s3) throw new SourceReadError(`no S3 client configured to read s3://${ref.bucket}/${ref.key}`);
    return this.s3.open(ref);
  }
}
