/**
 * The S3 store: production storage. Conditional writes use S3's own `If-None-Match: *` and
 * `If-Match` on PutObject and CompleteMultipartUpload, so atomicity is S3's, not ours.
 *
 * Retries: the store makes its own S3 client with the SDK's retries turned off (`maxAttempts: 1`)
 * and retries every request itself, with exponential backoff and full jitter, on 500/502/503/504
 * (503 SlowDown included), on 409 ConditionalRequestConflict (another conditional write to the same
 * key was in flight; S3 asks the caller to retry, and the retry re-evaluates the condition) and on
 * network errors. Multipart uploads go through the same retrying `send`, so a failed part is retried
 * alone, not the whole upload.
 *
 * A retried conditional put is ambiguous when an earlier attempt failed after S3 may have applied
 * it (500, network error): the retry then meets 412 from our own write. For `put` (bytes in memory)
 * the store resolves that by reading the object back: if it holds exactly our bytes, the write is
 * ours and succeeds. `putFile` does not (it would mean downloading the file); callers of
 * create-only `putFile` of content-addressed data can treat 412 as success after checking the hash.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { IndexError, ObjectNotFoundError, PreconditionFailedError, StoreError } from '../errors.ts';
import {
  assertOneCondition,
  assertValidKey,
  type GetOptions,
  type GetToFileOptions,
  type ListedObject,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  toBytes,
} from './types.ts';

const MiB = 1024 * 1024;

/** Options of {@link S3Store}. */
export interface S3StoreOptions {
  /** The bucket. */
  readonly bucket: string;
  /** Key prefix under which the store lives ('/'-separated, no leading or trailing '/'). Default: none. */
  readonly prefix?: string;
  /**
   * A ready S3 client. Default: one made from `region`, `endpoint`, `forcePathStyle` and
   * `credentials`, with the SDK's retries off. A client passed here keeps its own retry settings,
   * which then multiply with the store's: make it with `maxAttempts: 1`.
   */
  readonly client?: S3Client;
  /** AWS region. Default `AWS_REGION`, else `us-east-1`. */
  readonly region?: string;
  /** Endpoint URL of an S3-compatible server (tests, MinIO). Default: AWS's. */
  readonly endpoint?: string;
  /** Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`. Default false. */
  readonly forcePathStyle?: boolean;
  /** Static credentials. Default: the SDK's provider chain (environment, role, …). */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Server-side encryption of written objects, e.g. `aws:kms`. Default: the bucket's default. */
  readonly serverSideEncryption?: ServerSideEncryption | 'aws:kms' | 'AES256';
  /** KMS key id or ARN for `aws:kms`. Default: the AWS-managed key (or the bucket's default). */
  readonly sseKmsKeyId?: string;
  /** Use an S3 Bucket Key for SSE-KMS (fewer KMS calls). Default: the bucket's setting. */
  readonly bucketKeyEnabled?: boolean;
  /** Attempts per request, the first included. Default 6. */
  readonly maxAttempts?: number;
  /** First backoff ceiling; doubled on each retry, the delay drawn uniformly below it. Default 50 ms. */
  readonly baseDelayMs?: number;
  /** Backoff ceiling cap. Default 5,000 ms. */
  readonly maxDelayMs?: number;
  /** Part size of multipart uploads in `putFile`; smaller files go in one PUT. Default 8 MiB (S3's minimum is 5 MiB). */
  readonly uploadPartSize?: number;
  /** Parts uploaded at once. Default 4. */
  readonly uploadConcurrency?: number;
  /** Default part size of ranged downloads in `getToFile`. Default 8 MiB. */
  readonly downloadPartSize?: number;
  /** Default ranged downloads at once in `getToFile`. Default 4. */
  readonly downloadConcurrency?: number;
}

interface SdkError {
  name?: string;
  Code?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(error: unknown): number | undefined {
  return (error as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function codeOf(error: unknown): string | undefined {
  const e = error as SdkError | undefined;
  return e?.Code ?? e?.name ?? e?.code;
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'TimeoutError',
  'EAI_AGAIN',
]);

/** Whether S3 asks for a retry, or the request never got an answer. */
export function isRetryable(error: unknown): boolean {
  const status = statusOf(error);
  const code = codeOf(error);
  if (status === 409) return code === 'ConditionalRequestConflict';
  if (status !== undefined && [500, 502, 503, 504].includes(status)) return true;
  if (code === 'SlowDown' || code === 'InternalError' || code === 'RequestTimeout') return true;
  // Node's socket errors keep their errno in `code` and are named plain 'Error'.
  const errno = (error as SdkError | undefined)?.code;
  return status === undefined && [code, errno].some((c) => c !== undefined && NETWORK_CODES.has(c));
}

/** Whether a failed attempt may nevertheless have been applied (S3 rejects 503 and 409 before writing). */
function mayHaveApplied(error: unknown): boolean {
  const status = statusOf(error);
  return status === undefined || status === 500 || status === 502 || status === 504;
}

function isPreconditionFailed(error: unknown): boolean {
  return statusOf(error) === 412 || codeOf(error) === 'PreconditionFailed';
}

function isNotFound(error: unknown): boolean {
  const code = codeOf(error);
  return statusOf(error) === 404 || code === 'NoSuchKey' || code === 'NotFound';
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

/** An {@link ObjectStore} over an S3 bucket and prefix (see the module comment for retries). */
export class S3Store implements ObjectStore {
  readonly location: string;
  /** The S3 client in use. */
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly options: S3StoreOptions;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  /** @param options see {@link S3StoreOptions} */
  constructor(options: S3StoreOptions) {
    this.options = options;
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.location = `s3://${this.bucket}/${this.prefix}`;
    this.maxAttempts = options.maxAttempts ?? 6;
    this.baseDelayMs = options.baseDelayMs ?? 50;
    this.maxDelayMs = options.maxDelayMs ?? 5_000;
    this.client =
      options.client ??
      new S3Client({
        region: options.region ?? process.env['AWS_REGION'] ?? 'us-east-1',
        ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
        ...(options.forcePathStyle !== undefined && { forcePathStyle: options.forcePathStyle }),
        ...(options.credentials !== undefined && { credentials: options.credentials }),
        // The store retries itself, 409 ConditionalRequestConflict included, which the SDK does not.
        maxAttempts: 1,
      });
  }

  private fullKey(key: string): string {
    assertValidKey(key);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  private get sse() {
    return {
      ...(this.options.serverSideEncryption !== undefined && {
        ServerSideEncryption: this.options.serverSideEncryption as ServerSideEncryption,
      }),
      ...(this.options.sseKmsKeyId !== undefined && { SSEKMSKeyId: this.options.sseKmsKeyId }),
      ...(this.options.bucketKeyEnabled !== undefined && { BucketKeyEnabled: this.options.bucketKeyEnabled }),
    };
  }

  /**
   * Runs `attempt` until it succeeds, fails for good, or the attempts run out.
   * @param onRetry told of each retried failure
   */
  private async retrying<T>(attempt: () => Promise<T>, onRetry?: (error: unknown) => void): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (error) {
        if (n >= this.maxAttempts || !isRetryable(error)) throw error;
        onRetry?.(error);
        const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (n - 1));
        await sleep(Math.random() * ceiling);
      }
    }
  }

  /** A view of the client whose `send` retries, for lib-storage's Upload. */
  private retryingClient(): S3Client {
    const view = Object.create(this.client) as S3Client;
    const send = this.client.send.bind(this.client) as (command: unknown) => Promise<unknown>;
    Object.defineProperty(view, 'send', { value: (command: unknown) => this.retrying(() => send(command)) });
    return view;
  }

  private wrap(error: unknown, what: string): Error {
    if (error instanceof IndexError || error instanceof TypeError) return error;
    const code = codeOf(error);
    const status = statusOf(error);
    return new StoreError(
      `${this.location}: cannot ${what}` +
        (code || status ? ` (${code ?? ''}${status ? ` HTTP ${status}` : ''})` : ''),
      { cause: error },
    );
  }

  private async getObject(
    key: string,
    options: GetOptions,
    ifMatch?: string,
  ): Promise<GetObjectCommandOutput> {
    const range = options.range;
    if (range !== undefined) {
      const [start, end] = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
        throw new TypeError(`invalid byte range [${start}, ${end})`);
      }
    }
    try {
      return await this.retrying(() =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.fullKey(key),
            ...(range !== undefined && { Range: `bytes=${range[0]}-${range[1] - 1}` }),
            ...(ifMatch !== undefined && { IfMatch: ifMatch }),
          }),
        ),
      );
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key, { cause: error });
      throw error;
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array> {
    try {
      const range = options.range;
      // S3 has no empty range: ask whether the object exists, and return nothing.
      if (range !== undefined && range[1] <= range[0]) {
        if ((await this.head(key)) === undefined) throw new ObjectNotFoundError(key);
        return new Uint8Array(0);
      }
      const out = await this.getObject(key, options);
      return (await out.Body?.transformToByteArray()) ?? new Uint8Array(0);
    } catch (error) {
      // 416: the range starts at or past the end; the directory store answers that with no bytes.
      if (statusOf(error) === 416) return new Uint8Array(0);
      throw this.wrap(error, `get '${key}'`);
    }
  }

  async getStream(key: string, options: GetOptions = {}): Promise<Readable> {
    try {
      const out = await this.getObject(key, options);
      return out.Body as Readable;
    } catch (error) {
      throw this.wrap(error, `get '${key}'`);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.retrying(() =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
      );
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
        ...(out.LastModified !== undefined && { lastModified: out.LastModified }),
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap(error, `head '${key}'`);
    }
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    assertOneCondition(options);
    const bytes = toBytes(body);
    let ambiguous = false;
    try {
      const out = await this.retrying(
        () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: this.fullKey(key),
              Body: bytes,
              ContentLength: bytes.length,
              ContentType: options.contentType ?? 'application/octet-stream',
              ...(options.ifNoneMatch !== undefined && { IfNoneMatch: options.ifNoneMatch }),
              ...(options.ifMatch !== undefined && { IfMatch: options.ifMatch }),
              ...this.sse,
            }),
          ),
        (error) => {
          if (mayHaveApplied(error)) ambiguous = true;
        },
      );
      return { etag: out.ETag ?? '' };
    } catch (error) {
      // If-Match on a key that is gone: S3 answers 404 NoSuchKey; for the caller the swap is lost.
      if (isPreconditionFailed(error) || (options.ifMatch !== undefined && isNotFound(error))) {
        if (ambiguous) {
          const etag = await this.holds(key, bytes);
          if (etag !== undefined) return { etag };
        }
        throw new PreconditionFailedError(key, undefined, { cause: error });
      }
      throw this.wrap(error, `put '${key}'`);
    }
  }

  /** The object's etag if it holds exactly `bytes`, else undefined. */
  private async holds(key: string, bytes: Uint8Array): Promise<string | undefined> {
    try {
      const out = await this.getObject(key, {});
      const stored = (await out.Body?.transformToByteArray()) ?? new Uint8Array(0);
      return sameBytes(stored, bytes) ? (out.ETag ?? '') : undefined;
    } catch {
      return undefined;
    }
  }

  async putFile(key: string, localPath: string, options: PutOptions = {}): Promise<{ etag: string }> {
    assertOneCondition(options);
    try {
      const size = (await stat(localPath)).size;
      // lib-storage passes these params to PutObject (one part) or to Create/UploadPart/Complete
      // (several); the conditions take effect on PutObject and CompleteMultipartUpload, where S3
      // evaluates them, so a multipart create-only upload also lands exactly once.
      const upload = new Upload({
        client: this.retryingClient(),
        params: {
          Bucket: this.bucket,
          Key: this.fullKey(key),
          Body: createReadStream(localPath),
          ContentLength: size,
          ContentType: options.contentType ?? 'application/octet-stream',
          ...(options.ifNoneMatch !== undefined && { IfNoneMatch: options.ifNoneMatch }),
          ...(options.ifMatch !== undefined && { IfMatch: options.ifMatch }),
          ...this.sse,
        },
        partSize: Math.max(this.options.uploadPartSize ?? 8 * MiB, 5 * MiB),
        queueSize: this.options.uploadConcurrency ?? 4,
        leavePartsOnError: false,
      });
      const out = await upload.done();
      return { etag: ('ETag' in out ? out.ETag : undefined) ?? '' };
    } catch (error) {
      if (isPreconditionFailed(error) || (options.ifMatch !== undefined && isNotFound(error))) {
        throw new PreconditionFailedError(key, undefined, { cause: error });
      }
      throw this.wrap(error, `upload '${localPath}' to '${key}'`);
    }
  }

  async getToFile(key: string, localPath: string, options: GetToFileOptions = {}): Promise<ObjectInfo> {
    const target = resolve(localPath);
    const tmp = `${target}.${Math.random().toString(16).slice(2)}.part`;
    try {
      const info = await this.head(key);
      if (info === undefined) throw new ObjectNotFoundError(key);
      const partSize = options.partSize ?? this.options.downloadPartSize ?? 8 * MiB;
      const concurrency = Math.max(1, options.concurrency ?? this.options.downloadConcurrency ?? 4);
      if (!(partSize > 0)) throw new TypeError(`partSize must be positive, got ${partSize}`);
      await mkdir(dirname(target), { recursive: true });
      if (info.size <= partSize) {
        const out = await this.getObject(key, {}, info.etag);
        await pipeline(out.Body as Readable, (await open(tmp, 'wx')).createWriteStream());
      } else {
        // Ranged GETs pinned to the etag seen by head: a concurrent overwrite fails the download
        // (412) instead of splicing two versions into one file.
        const fh = await open(tmp, 'wx');
        try {
          let next = 0;
          const worker = async () => {
            for (;;) {
              const start = next;
              if (start >= info.size) return;
              next += partSize;
              const end = Math.min(start + partSize, info.size);
              const out = await this.getObject(key, { range: [start, end] }, info.etag);
              const bytes = (await out.Body?.transformToByteArray()) ?? new Uint8Array(0);
              if (bytes.length !== end - start) {
                throw new StoreError(`${this.location}: short range read of '${key}' at ${start}`);
              }
              await fh.write(bytes, 0, bytes.length, start);
            }
          };
          await Promise.all(Array.from({ length: concurrency }, worker));
        } finally {
          await fh.close();
        }
      }
      const written = (await stat(tmp)).size;
      if (written !== info.size) {
        throw new StoreError(
          `${this.location}: downloaded ${written} bytes of '${key}', expected ${info.size}`,
        );
      }
      await rename(tmp, target);
      return info;
    } catch (error) {
      await rm(tmp, { force: true });
      if (isPreconditionFailed(error)) {
        throw new StoreError(`${this.location}: '${key}' changed during the download; retry`, {
          cause: error,
        });
      }
      throw this.wrap(error, `download '${key}' to '${localPath}'`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.retrying(() =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
      );
    } catch (error) {
      if (isNotFound(error)) return;
      throw this.wrap(error, `delete '${key}'`);
    }
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let token: string | undefined;
    do {
      let out: ListObjectsV2CommandOutput;
      try {
        out = await this.retrying(() =>
          this.client.send(
            new ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: base + prefix,
              ...(token !== undefined && { ContinuationToken: token }),
            }),
          ),
        );
      } catch (error) {
        throw this.wrap(error, `list '${prefix}'`);
      }
      for (const item of out.Contents ?? []) {
        if (item.Key === undefined) continue;
        yield {
          key: item.Key.slice(base.length),
          size: item.Size ?? 0,
          etag: item.ETag ?? '',
          ...(item.LastModified !== undefined && { lastModified: item.LastModified }),
        };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }
}
