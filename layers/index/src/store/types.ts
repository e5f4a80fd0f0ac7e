/**
 * The object-store contract shared by every adapter (a local directory, S3). Keys are
 * '/'-separated relative names such as `manifests/00000001.json`: no leading '/', no empty, '.'
 * or '..' segments, no backslashes.
 */
import type { Readable } from 'node:stream';

/** What {@link ObjectStore.head} and {@link ObjectStore.list} report about one object. */
export interface ObjectInfo {
  /** Size in bytes. */
  readonly size: number;
  /**
   * Opaque version tag, to pass back as `ifMatch`. Compare it only with etags from the same store;
   * its format differs between adapters (quoted MD5 on S3, sha256 hex locally).
   */
  readonly etag: string;
  /**
   * When the object was last written (the directory store: the file's mtime; S3: `LastModified`,
   * whole seconds). Garbage collection compares it with its grace period, so that an object written
   * moments ago (uploaded, not yet committed) is never taken for garbage. Optional so that other
   * implementations of the interface stay valid; a store that leaves it out is never collected.
   */
  readonly lastModified?: Date;
}

/** One entry of {@link ObjectStore.list}. */
export interface ListedObject extends ObjectInfo {
  /** The object's key, relative to the store's root (its prefix removed). */
  readonly key: string;
}

/** Options of {@link ObjectStore.get} and {@link ObjectStore.getStream}. */
export interface GetOptions {
  /**
   * Byte range `[start, endExclusive]`. An end past the object's size is clamped to it, as S3
   * does; a start at or past the end gives no bytes. Default: the whole object.
   */
  readonly range?: readonly [number, number];
}

/**
 * Options of {@link ObjectStore.put} and {@link ObjectStore.putFile}. At most one of `ifNoneMatch`
 * and `ifMatch` may be given. Default: an unconditional write (last writer wins).
 */
export interface PutOptions {
  /** `'*'`: create-only; throws `PreconditionFailedError` if the key already exists. */
  readonly ifNoneMatch?: '*';
  /**
   * Compare-and-swap: write only if the object's current etag equals this one; throws
   * `PreconditionFailedError` if it differs or the object is gone.
   */
  readonly ifMatch?: string;
  /** MIME type, stored on S3 (ignored by the directory store). Default `application/octet-stream`. */
  readonly contentType?: string;
}

/** Options of {@link ObjectStore.getToFile}. */
export interface GetToFileOptions {
  /** Bytes per ranged request for large objects (S3). Default 8 MiB. */
  readonly partSize?: number;
  /** Ranged requests in flight at once (S3). Default 4. */
  readonly concurrency?: number;
}

/**
 * A flat key/value object store with conditional writes. Every write is atomic: a reader sees
 * the old object or the new one, never a part.
 */
export interface ObjectStore {
  /** Where the store points, for messages: a directory path or an `s3://bucket/prefix` URI. */
  readonly location: string;

  /**
   * The local file that holds `key` (it may not exist), for stores whose objects are plain local
   * files (the directory store); absent for remote stores. Readers open such files in place
   * instead of copying them.
   */
  readonly pathOf?: (key: string) => string;

  /**
   * Reads an object, or a byte range of it, into memory.
   * @throws ObjectNotFoundError when the key does not exist
   */
  get(key: string, options?: GetOptions): Promise<Uint8Array>;

  /**
   * Opens an object, or a byte range of it, as a stream (for objects too large to hold in memory).
   * @throws ObjectNotFoundError when the key does not exist
   */
  getStream(key: string, options?: GetOptions): Promise<Readable>;

  /** Size and etag of an object, or `undefined` when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * Writes an object atomically.
   * @throws PreconditionFailedError when `ifNoneMatch` or `ifMatch` is given and does not hold
   */
  put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<{ etag: string }>;

  /**
   * Writes the contents of a local file as an object (multipart on S3 for large files).
   * @throws PreconditionFailedError when `ifNoneMatch` or `ifMatch` is given and does not hold
   */
  putFile(key: string, localPath: string, options?: PutOptions): Promise<{ etag: string }>;

  /**
   * Downloads an object to a local file: written to a temporary file beside `localPath`, then
   * renamed over it, so `localPath` never holds a partial object.
   * @throws ObjectNotFoundError when the key does not exist
   */
  getToFile(key: string, localPath: string, options?: GetToFileOptions): Promise<ObjectInfo>;

  /** Deletes an object; deleting a missing key is not an error (as on S3). */
  delete(key: string): Promise<void>;

  /** Every object whose key starts with `prefix` (a plain string prefix, not only a folder), in key order. */
  list(prefix: string): AsyncIterable<ListedObject>;
}

/**
 * Validates an object key (see the module comment for the rules).
 * @throws TypeError naming the key and the rule it breaks
 */
export function assertValidKey(key: string): void {
  if (key.length === 0) throw new TypeError('object key is empty');
  if (key.includes('\\')) throw new TypeError(`object key '${key}' contains a backslash`);
  if (key.includes('\0')) throw new TypeError(`object key '${key}' contains a NUL byte`);
  for (const part of key.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new TypeError(`object key '${key}' has an empty, '.' or '..' segment`);
    }
  }
}

/**
 * Checks that at most one condition is given.
 * @throws TypeError when both `ifNoneMatch` and `ifMatch` are set
 */
export function assertOneCondition(options: PutOptions | undefined): void {
  if (options?.ifNoneMatch !== undefined && options.ifMatch !== undefined) {
    throw new TypeError('pass ifNoneMatch or ifMatch, not both');
  }
}

/** Converts a body to bytes (strings as UTF-8). */
export function toBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === 'string' ? new TextEncoder().encode(body) : body;
}
