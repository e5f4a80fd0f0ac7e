/**
 * One contract, run against every object store: the directory store, S3Store on s3rver (which
 * ignores conditional headers, so only the unconditional part runs there) and S3Store on the
 * conditional test server (which enforces them as S3 documents).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectNotFoundError, PreconditionFailedError } from '../../../../layers/index/src/errors.ts';
import { LocalDirectoryStore, type ObjectStore, S3Store } from '../../../../layers/index/src/store/index.ts';
import { startConditionalS3Server } from '../../../helpers/s3-conditional-server.ts';
import { startS3rver } from '../../../helpers/s3rver.ts';

/** A store under test and how to dispose of it. */
export interface ContractTarget {
  readonly store: ObjectStore;
  close(): Promise<void>;
}

const fakeCredentials = { accessKeyId: 'test', secretAccessKey: 'test' };

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function streamBytes(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * Registers the object-store contract for one store.
 * @param enforcesConditions whether the store enforces ifNoneMatch / ifMatch (s3rver does not); the
 *   conditional part of the contract is registered only where it can prove something
 */
export function describeObjectStoreContract(
  name: string,
  make: () => Promise<ContractTarget>,
  { enforcesConditions }: { enforcesConditions: boolean },
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let target: ContractTarget;
    let store: ObjectStore;
    let scratch: string;
    beforeAll(async () => {
      target = await make();
      store = target.store;
      scratch = await mkdtemp(join(tmpdir(), 'store-contract-'));
    });
    afterAll(async () => {
      await target?.close();
      await rm(scratch, { recursive: true, force: true });
    });
    // Conditional tests are registered only where the store enforces conditions: on s3rver they
    // would prove nothing (s3.test.ts shows that s3rver ignores them).
    const conditional = (name: string, fn: () => Promise<void>): void => {
      if (enforcesConditions) it(name, fn);
    };

    it('returns the bytes it stored, and head reports their size and the put etag', async () => {
      const bytes = new Uint8Array(1000).map((_, i) => i % 256);
      const { etag } = await store.put('roundtrip/bin', bytes);
      expect(await store.get('roundtrip/bin')).toEqual(bytes);
      expect(await store.head('roundtrip/bin')).toEqual({ size: 1000, etag, lastModified: expect.any(Date) });
      await store.put('roundtrip/text.json', '{"é":1}', { contentType: 'application/json' });
      expect(new TextDecoder().decode(await store.get('roundtrip/text.json'))).toBe('{"é":1}');
    });

    it('reads byte ranges, clamping an end past the object', async () => {
      const bytes = randomBytes(500);
      await store.put('range/obj', bytes);
      expect(Buffer.from(await store.get('range/obj', { range: [10, 20] }))).toEqual(bytes.subarray(10, 20));
      expect(Buffer.from(await store.get('range/obj', { range: [490, 600] }))).toEqual(bytes.subarray(490));
      expect(await store.get('range/obj', { range: [7, 7] })).toHaveLength(0);
      expect(await streamBytes(await store.getStream('range/obj', { range: [100, 300] }))).toEqual(
        bytes.subarray(100, 300),
      );
      expect(await streamBytes(await store.getStream('range/obj'))).toEqual(bytes);
    });

    it('reports a missing key as ObjectNotFoundError (get, getStream, getToFile) and undefined (head)', async () => {
      await expect(store.get('missing/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.get('missing/x', { range: [0, 0] })).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.getStream('missing/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.getToFile('missing/x', join(scratch, 'missing'))).rejects.toBeInstanceOf(
        ObjectNotFoundError,
      );
      expect(await store.head('missing/x')).toBeUndefined();
    });

    it('lists by string prefix, in key order, with sizes and etags', async () => {
      const etags = new Map<string, string>();
      for (const key of ['list/b/1', 'list/a/2', 'list/a/1', 'list/ab', 'listing/other']) {
        etags.set(key, (await store.put(key, key)).etag);
      }
      const folder = await collect(store.list('list/a/'));
      expect(folder.map((o) => o.key)).toEqual(['list/a/1', 'list/a/2']);
      expect(folder[0]).toEqual({
        key: 'list/a/1',
        size: 8,
        etag: etags.get('list/a/1'),
        lastModified: expect.any(Date),
      });
      expect((await collect(store.list('list/a'))).map((o) => o.key)).toEqual([
        'list/a/1',
        'list/a/2',
        'list/ab',
      ]);
      expect((await collect(store.list('list/'))).map((o) => o.key)).toEqual([
        'list/a/1',
        'list/a/2',
        'list/ab',
        'list/b/1',
      ]);
      expect(await collect(store.list('nothing-here/'))).toEqual([]);
    });

    it('reports when each object was last written, in head and list alike', async () => {
      // S3 keeps whole seconds: allow a second of rounding either side.
      const before = Date.now() - 1000;
      await store.put('modified/a', 'first');
      const after = Date.now() + 1000;
      const head = await store.head('modified/a');
      const [listed] = await collect(store.list('modified/'));
      for (const at of [head?.lastModified, listed?.lastModified]) {
        expect(at).toBeInstanceOf(Date);
        expect(at!.getTime()).toBeGreaterThanOrEqual(before);
        expect(at!.getTime()).toBeLessThanOrEqual(after);
      }
      // Head (an HTTP date) and list (ISO 8601) may round differently, by under a second.
      expect(Math.abs(listed!.lastModified!.getTime() - head!.lastModified!.getTime())).toBeLessThan(1000);
    });

    it('deletes, and deleting a missing key is not an error', async () => {
      await store.put('delete/me', 'x');
      await store.delete('delete/me');
      expect(await store.head('delete/me')).toBeUndefined();
      expect(await collect(store.list('delete/'))).toEqual([]);
      await store.delete('delete/me');
    });

    it('overwrites unconditionally, with a new etag', async () => {
      const first = await store.put('overwrite/k', 'one');
      const second = await store.put('overwrite/k', 'two!');
      expect(second.etag).not.toBe(first.etag);
      expect(new TextDecoder().decode(await store.get('overwrite/k'))).toBe('two!');
    });

    it('downloads a multi-part-sized object to a file that equals the source', async () => {
      const bytes = randomBytes(1_500_000 + 17);
      await store.put('big/blob', bytes);
      const dest = join(scratch, 'nested', 'blob.bin');
      const info = await store.getToFile('big/blob', dest, { partSize: 256 * 1024, concurrency: 3 });
      expect(info.size).toBe(bytes.length);
      // Buffer.equals, not toEqual: vitest's deep equality walks a large buffer byte by byte, slowly.
      expect((await readFile(dest)).equals(bytes)).toBe(true);
      expect((await readdir(join(scratch, 'nested'))).filter((f) => f.endsWith('.part'))).toEqual([]);
    });

    it('uploads a local file with putFile', async () => {
      const src = join(scratch, 'upload.bin');
      const bytes = randomBytes(70_000);
      await writeFile(src, bytes);
      const { etag } = await store.putFile('files/upload.bin', src);
      expect((await store.head('files/upload.bin'))?.etag).toBe(etag);
      expect(Buffer.from(await store.get('files/upload.bin')).equals(bytes)).toBe(true);
    });

    conditional('create-only refuses an existing key with PreconditionFailedError', async () => {
      await store.put('create/once', 'first', { ifNoneMatch: '*' });
      await expect(store.put('create/once', 'second', { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect(new TextDecoder().decode(await store.get('create/once'))).toBe('first');
      const src = join(scratch, 'cf.txt');
      await writeFile(src, 'file');
      await expect(store.putFile('create/once', src, { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
    });

    conditional('lets exactly one of 16 racing create-only writers win', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 16 }, (_, i) => store.put('race/manifest', `writer ${i}`, { ifNoneMatch: '*' })),
      );
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) {
        if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PreconditionFailedError);
      }
      expect(new TextDecoder().decode(await store.get('race/manifest'))).toBe(`writer ${winners[0]}`);
    });

    conditional('detects a lost update: of two CAS writers holding the same etag, one wins', async () => {
      const { etag } = await store.put('cas/k', 'v0');
      const results = await Promise.allSettled([
        store.put('cas/k', 'from A', { ifMatch: etag }),
        store.put('cas/k', 'from B', { ifMatch: etag }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(PreconditionFailedError);
      await expect(store.put('cas/k', 'stale', { ifMatch: etag })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      await expect(store.put('cas/gone', 'x', { ifMatch: etag })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
    });

    conditional('loses no increment when 8 writers CAS-increment one counter 5 times each', async () => {
      await store.put('cas/counter', '0');
      const increment = async () => {
        for (;;) {
          const info = await store.head('cas/counter');
          const value = Number(new TextDecoder().decode(await store.get('cas/counter')));
          try {
            // The etag read first guards the value read after: if another writer slipped in
            // between, the etag is stale and the CAS fails.
            await store.put('cas/counter', String(value + 1), { ifMatch: info!.etag });
            return;
          } catch (error) {
            if (!(error instanceof PreconditionFailedError)) throw error;
          }
        }
      };
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 5; i++) await increment();
        }),
      );
      expect(new TextDecoder().decode(await store.get('cas/counter'))).toBe('40');
    });
  });
}

describeObjectStoreContract(
  'LocalDirectoryStore',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'local-store-'));
    return {
      store: new LocalDirectoryStore(dir),
      close: () => rm(dir, { recursive: true, force: true }),
    };
  },
  { enforcesConditions: true },
);

describeObjectStoreContract(
  'S3Store on s3rver (conditions not enforced there)',
  async () => {
    const server = await startS3rver(['contract']);
    return {
      store: new S3Store({
        bucket: 'contract',
        prefix: 'root/dir',
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: server.credentials,
      }),
      close: () => server.close(),
    };
  },
  { enforcesConditions: false },
);

describeObjectStoreContract(
  'S3Store on the conditional S3 server',
  async () => {
    const server = await startConditionalS3Server({ listPageSize: 2 });
    return {
      store: new S3Store({
        bucket: 'contract',
        prefix: 'root',
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: fakeCredentials,
      }),
      close: () => server.close(),
    };
  },
  { enforcesConditions: true },
);
