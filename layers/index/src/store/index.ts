/**
 * Object stores: one interface ({@link ObjectStore}), two adapters (a local directory, S3), and
 * {@link openStore} to pick one from a location string.
 */
import { fileURLToPath } from 'node:url';
import { StoreError } from '../errors.ts';
import { LocalDirectoryStore, type LocalDirectoryStoreOptions } from './local.ts';
import { S3Store, type S3StoreOptions } from './s3.ts';
import type { ObjectStore } from './types.ts';

export { LocalDirectoryStore, type LocalDirectoryStoreOptions, syncFolder } from './local.ts';
export { isRetryable, S3Store, type S3StoreOptions } from './s3.ts';
export type {
  GetOptions,
  GetToFileOptions,
  ListedObject,
  ObjectInfo,
  ObjectStore,
  PutOptions,
} from './types.ts';
export { assertValidKey } from './types.ts';

/** Options of {@link openStore}, passed on to the adapter that the location selects. */
export interface OpenStoreOptions {
  /** For a directory location. */
  readonly local?: LocalDirectoryStoreOptions;
  /** For an `s3://` location (bucket and prefix come from the URI). */
  readonly s3?: Omit<S3StoreOptions, 'bucket' | 'prefix'>;
}

/**
 * Opens the store at a location: `s3://bucket/optional/prefix` → {@link S3Store}; a `file://` URL
 * or a plain path → {@link LocalDirectoryStore}.
 * @throws StoreError for an `s3://` URI without a bucket, or another URL scheme
 */
export function openStore(location: string, options: OpenStoreOptions = {}): ObjectStore {
  if (location.startsWith('s3://')) {
    const rest = location.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (bucket === '') throw new StoreError(`store location '${location}' names no bucket`);
    return new S3Store({ ...options.s3, bucket, prefix });
  }
  if (location.startsWith('file:')) {
    return new LocalDirectoryStore(fileURLToPath(location), options.local);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new StoreError(`store location '${location}': unsupported scheme (use a path, file:// or s3://)`);
  }
  return new LocalDirectoryStore(location, options.local);
}
