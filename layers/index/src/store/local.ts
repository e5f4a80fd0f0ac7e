/**
 * The directory store: the embedded default. Objects are plain files under the root directory, so
 * other code (hnswlib-node reads files only) can open them in place.
 *
 * Atomicity scheme, all of it on operating-system primitives that hold between processes:
 * - Every write first lands in a temporary file under `<root>/.store/tmp/` (same filesystem, so the
 *   final step is a metadata operation), is fsynced, and only then becomes visible.
 * - Create-only (`ifNoneMatch: '*'`): `link(temp, final)`. The kernel creates the name only if it is
 *   absent and fails with EEXIST otherwise, atomically, so of any number of racing writers (threads,
 *   processes) exactly one wins. No lock is needed.
 * - Unconditional put, compare-and-swap (`ifMatch`) and delete take a per-key lock: a file under
 *   `<root>/.store/locks/` created with `open(…, 'wx')` (O_CREAT|O_EXCL, atomic). Under the lock,
 *   CAS hashes the current file and compares it with `ifMatch`, then `rename(temp, final)` replaces
 *   the object atomically. Create-only needs no lock against them: it only succeeds when the file is
 *   absent, and CAS only when it is present.
 * - A lock older than `staleLockMs` (a holder that crashed) is removed by the next waiter.
 *
 * Etags are the sha256 of the content (hex). They change with every write that changes the bytes;
 * a write of identical bytes keeps the etag, as S3's MD5 etags do, which is harmless for CAS since
 * the compared state is then the same. The price: `head` and `list` read each file to hash it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, type FileHandle, link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** The reserved top-level folder holding temporary and lock files; no key may start with it. */
const RESERVED = '.store';

/** Options of {@link LocalDirectoryStore}. */
export interface LocalDirectoryStoreOptions {
  /** fsync each written file and its folder before reporting success (durability). Default true. */
  readonly fsync?: boolean;
  /** How long a writer waits for a per-key lock before giving up. Default 30,000 ms. */
  readonly lockTimeoutMs?: number;
  /** Age after which a lock is taken to be left by a crashed holder and removed. Default 60,000 ms. */
  readonly staleLockMs?: number;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function isMissing(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR';
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** An {@link ObjectStore} over a local directory (see the module comment for the atomicity scheme). */
export class LocalDirectoryStore implements ObjectStore {
  /** The absolute root directory. */
  readonly root: string;
  readonly location: string;
  private readonly fsync: boolean;
  private readonly lockTimeoutMs: number;
  private readonly staleLockMs: number;
  private readonly tmpDir: string;
  private readonly lockDir: string;

  /**
   * @param root the directory holding the objects; created on the first write
   * @param options see {@link LocalDirectoryStoreOptions}
   */
  constructor(root: string, options: LocalDirectoryStoreOptions = {}) {
    this.root = resolve(root);
    this.location = this.root;
    this.fsync = options.fsync ?? true;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.staleLockMs = options.staleLockMs ?? 60_000;
    this.tmpDir = join(this.root, RESERVED, 'tmp');
    this.lockDir = join(this.root, RESERVED, 'locks');
  }

  /** The file that holds `key` (it may not exist). Other layers may open it directly. */
  pathOf(key: string): string {
    assertValidKey(key);
    if (key === RESERVED || key.startsWith(`${RESERVED}/`)) {
      throw new TypeError(`object key '${key}' is reserved by the directory store`);
    }
    return join(this.root, ...key.split('/'));
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array> {
    const path = this.pathOf(key);
    const fh = await this.openForRead(key, path);
    try {
      const size = (await fh.stat()).size;
      const [start, end] = clampRange(options.range, size);
      const out = new Uint8Array(end - start);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await fh.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === out.length ? out : out.subarray(0, done);
    } catch (error) {
      throw this.wrap(error, `read '${key}'`);
    } finally {
      await fh.close();
    }
  }

  async getStream(key: string, options: GetOptions = {}): Promise<Readable> {
    const path = this.pathOf(key);
    const fh = await this.openForRead(key, path);
    const size = (await fh.stat()).size;
    const [start, end] = clampRange(options.range, size);
    if (end <= start) {
      await fh.close();
      return Readable.from([]);
    }
    // `end` of createReadStream is inclusive.
    return fh.createReadStream({ start, end: end - 1, autoClose: true });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.wrap(error, `open '${key}'`);
    }
    try {
      // Size and hash from one descriptor, so they describe the same version of the object even if
      // a writer renames a new one over it meanwhile.
      const info = await fh.stat();
      if (!info.isFile()) return undefined;
      return { size: info.size, etag: await hashHandle(fh), lastModified: info.mtime };
    } finally {
      await fh.close();
    }
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    this.pathOf(key);
    assertOneCondition(options);
    const bytes = toBytes(body);
    const tmp = await this.tempPath();
    try {
      const fh = await open(tmp, 'wx');
      try {
        await fh.writeFile(bytes);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      const etag = createHash('sha256').update(bytes).digest('hex');
      await this.commit(key, tmp, options);
      return { etag };
    } catch (error) {
      throw this.wrap(error, `write '${key}'`);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async putFile(key: string, localPath: string, options: PutOptions = {}): Promise<{ etag: string }> {
    this.pathOf(key);
    assertOneCondition(options);
    const tmp = await this.tempPath();
    try {
      await copyFile(localPath, tmp);
      const fh = await open(tmp, 'r+');
      let etag: string;
      try {
        etag = await hashHandle(fh);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.commit(key, tmp, options);
      return { etag };
    } catch (error) {
      throw this.wrap(error, `write '${key}' from '${localPath}'`);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async getToFile(key: string, localPath: string, _options?: GetToFileOptions): Promise<ObjectInfo> {
    const path = this.pathOf(key);
    const fh = await this.openForRead(key, path);
    const target = resolve(localPath);
    const tmp = `${target}.${randomBytes(6).toString('hex')}.part`;
    try {
      await mkdir(dirname(target), { recursive: true });
      const hash = createHash('sha256');
      let size = 0;
      const source = fh.createReadStream({ autoClose: false });
      source.on('data', (chunk: string | Buffer) => {
        hash.update(chunk);
        size += chunk.length;
      });
      await pipeline(source, createWriteStream(tmp, { flags: 'wx' }));
      await rename(tmp, target);
      return { size, etag: hash.digest('hex') };
    } catch (error) {
      await rm(tmp, { force: true });
      throw this.wrap(error, `copy '${key}' to '${localPath}'`);
    } finally {
      await fh.close();
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await this.withLock(key, () => rm(path, { force: true }));
    } catch (error) {
      throw this.wrap(error, `delete '${key}'`);
    }
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    // Walk only the deepest folder that the prefix names fully; filter the rest by string prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash + 1);
    const keys: string[] = [];
    await this.walk(base, prefix, keys);
    keys.sort();
    for (const key of keys) {
      const info = await this.head(key);
      if (info) yield { key, ...info };
    }
  }

  private async walk(relDir: string, prefix: string, out: string[]): Promise<void> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(join(this.root, ...relDir.split('/').filter(Boolean)), { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw this.wrap(error, `list '${relDir}'`);
    }
    for (const entry of entries) {
      if (relDir === '' && entry.name === RESERVED) continue;
      const rel = relDir + entry.name;
      if (entry.isDirectory()) {
        const asDir = `${rel}/`;
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await this.walk(asDir, prefix, out);
      } else if (entry.isFile() && rel.startsWith(prefix)) {
        out.push(rel);
      }
    }
  }

  /** Makes the temporary file `tmp` visible as `key`, under the condition in `options`. */
  private async commit(key: string, tmp: string, options: PutOptions): Promise<void> {
    const final = this.pathOf(key);
    await mkdir(dirname(final), { recursive: true });
    if (options.ifNoneMatch === '*') {
      try {
        await link(tmp, final);
      } catch (error) {
        if (errnoCode(error) === 'EEXIST')
          throw new PreconditionFailedError(key, undefined, { cause: error });
        throw error;
      }
    } else {
      await this.withLock(key, async () => {
        if (options.ifMatch !== undefined) {
          const current = await this.head(key);
          if (current === undefined) {
            throw new PreconditionFailedError(key, `compare-and-swap of '${key}' lost: the object is gone`);
          }
          if (current.etag !== options.ifMatch) {
            throw new PreconditionFailedError(key, `compare-and-swap of '${key}' lost: its etag changed`);
          }
        }
        await rename(tmp, final);
      });
    }
    if (this.fsync) await syncFolder(dirname(final));
  }

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(this.lockDir, { recursive: true });
    const lockPath = join(this.lockDir, `${createHash('sha256').update(key).digest('hex')}.lock`);
    const started = Date.now();
    let delay = 1;
    for (;;) {
      try {
        const fh = await open(lockPath, 'wx');
        await fh.close();
        break;
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') throw error;
      }
      try {
        const age = Date.now() - (await stat(lockPath)).mtimeMs;
        if (age > this.staleLockMs) await rm(lockPath, { force: true });
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
      if (Date.now() - started > this.lockTimeoutMs) {
        throw new StoreError(`timed out after ${this.lockTimeoutMs} ms waiting for the lock on '${key}'`);
      }
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 50);
    }
    try {
      return await fn();
    } finally {
      await rm(lockPath, { force: true });
    }
  }

  private async tempPath(): Promise<string> {
    await mkdir(this.tmpDir, { recursive: true });
    return join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
  }

  private async openForRead(key: string, path: string): Promise<FileHandle> {
    try {
      const fh = await open(path, 'r');
      if (!(await fh.stat()).isFile()) {
        await fh.close();
        throw new ObjectNotFoundError(key);
      }
      return fh;
    } catch (error) {
      if (error instanceof IndexError) throw error;
      if (isMissing(error)) throw new ObjectNotFoundError(key, { cause: error });
      throw this.wrap(error, `open '${key}'`);
    }
  }

  private wrap(error: unknown, what: string): Error {
    if (error instanceof IndexError || error instanceof TypeError) return error;
    return new StoreError(`directory store ${this.root}: cannot ${what}`, { cause: error });
  }
}

/** `[start, end)` clamped to `[0, size]`. */
export function clampRange(range: readonly [number, number] | undefined, size: number): [number, number] {
  if (range === undefined) return [0, size];
  const [start, end] = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new TypeError(`invalid byte range [${start}, ${end})`);
  }
  return [Math.min(start, size), Math.min(end, size)];
}

async function hashHandle(fh: FileHandle): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fh.createReadStream({ start: 0, autoClose: false })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Errors of opening or syncing a folder that mean the platform cannot, not that the disk failed. */
const FOLDER_SYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EINVAL', 'ENOTSUP', 'EACCES']);

/**
 * fsyncs a folder, so that the names just created in it survive a crash. Skipped where the
 * platform cannot open or sync a folder (Windows, some file systems); any other error (EIO) throws.
 */
export async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(folder, 'r');
  } catch (error) {
    if (FOLDER_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    if (!FOLDER_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}
