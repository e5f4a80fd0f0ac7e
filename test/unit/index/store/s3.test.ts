/**
 * S3Store behaviour beyond the shared contract: retries (503 SlowDown, 500, 409
 * ConditionalRequestConflict), ambiguous retried writes, SSE-KMS headers, multipart uploads with
 * conditions, and a demonstration that s3rver ignores conditional writes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PreconditionFailedError, StoreError } from '../../../../layers/index/src/errors.ts';
import { isRetryable, S3Store, type S3StoreOptions } from '../../../../layers/index/src/store/index.ts';
import {
  type ConditionalS3Server,
  startConditionalS3Server,
} from '../../../helpers/s3-conditional-server.ts';
import { type RunningS3rver, startS3rver } from '../../../helpers/s3rver.ts';

const MiB = 1024 * 1024;
let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 's3-store-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('S3Store on s3rver', () => {
  let server: RunningS3rver;
  let store: S3Store;
  beforeAll(async () => {
    server = await startS3rver(['plain']);
    store = new S3Store({
      bucket: 'plain',
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: server.credentials,
    });
  });
  afterAll(() => server.close());

  it('lets a second create-only put succeed, so it must never be trusted to test commits', async () => {
    await store.put('manifests/00000001.json', 'first', { ifNoneMatch: '*' });
    // On S3 this second write fails with 412; s3rver drops If-None-Match and overwrites.
    await store.put('manifests/00000001.json', 'second', { ifNoneMatch: '*' });
    expect(new TextDecoder().decode(await store.get('manifests/00000001.json'))).toBe('second');
  });

  it('uploads a multipart-sized file with putFile (lib-storage) and reads it back', async () => {
    const src = join(scratch, 's3rver-big.bin');
    const bytes = randomBytes(11 * MiB);
    await writeFile(src, bytes);
    // 11 MiB at the default 8 MiB part size: two parts. (s3rver computes its own kind of etag.)
    const { etag } = await store.putFile('segments/big.bin', src);
    expect((await store.head('segments/big.bin'))?.etag).toBe(etag);
    expect(Buffer.from(await store.get('segments/big.bin')).equals(bytes)).toBe(true);
  });
});

describe('S3Store on the conditional S3 server', () => {
  let server: ConditionalS3Server;
  const make = (options: Partial<S3StoreOptions> = {}) =>
    new S3Store({
      bucket: 'b',
      prefix: 'idx',
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      baseDelayMs: 5,
      ...options,
    });
  beforeEach(async () => {
    server = await startConditionalS3Server();
  });
  afterEach(() => server.close());

  it('retries 503 SlowDown on a write and succeeds', async () => {
    server.failNext({ method: 'PUT', status: 503, code: 'SlowDown', count: 2 });
    await make().put('k', 'v', { ifNoneMatch: '*' });
    expect(server.requests.filter((r) => r.method === 'PUT').map((r) => r.status)).toEqual([503, 503, 200]);
    expect(server.objects.get('b/idx/k')?.body.toString()).toBe('v');
  });

  it('retries 500 InternalError on a read and succeeds', async () => {
    const store = make();
    await store.put('k', 'v');
    server.failNext({ method: 'GET', status: 500, code: 'InternalError' });
    expect(new TextDecoder().decode(await store.get('k'))).toBe('v');
  });

  it('gives up after maxAttempts with a StoreError that keeps the cause', async () => {
    server.failNext({ method: 'PUT', status: 503, code: 'SlowDown', count: 10 });
    const error = await make({ maxAttempts: 3 })
      .put('k', 'v')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).message).toContain('SlowDown');
    expect((error as StoreError).cause).toBeDefined();
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(3);
  });

  it('does not retry a 412: the precondition failure is final', async () => {
    const store = make();
    await store.put('k', 'v');
    await expect(store.put('k', 'w', { ifNoneMatch: '*' })).rejects.toBeInstanceOf(PreconditionFailedError);
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(2);
  });

  it('recognises its own write when a retried create-only put meets 412 after a lost response', async () => {
    // The first attempt is applied but answered 500 (as when a response is lost): the retry sees
    // the object it wrote itself. The store reads it back and reports success, not a lost race.
    server.failNext({ method: 'PUT', status: 500, code: 'InternalError', applyFirst: true });
    const { etag } = await make().put('m', 'mine', { ifNoneMatch: '*' });
    expect(etag).toBe(server.objects.get('b/idx/m')?.etag);
    expect(server.requests.filter((r) => r.method === 'PUT').map((r) => r.status)).toEqual([500, 412]);
  });

  it('still reports a lost race after an ambiguous failure when the object holds other bytes', async () => {
    const store = make();
    await store.put('m', 'theirs');
    server.failNext({ method: 'PUT', status: 500, code: 'InternalError' });
    await expect(store.put('m', 'mine', { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
  });

  it('retries 409 ConditionalRequestConflict: of 16 overlapping create-only writers exactly one wins', async () => {
    await server.close();
    server = await startConditionalS3Server({ conflictOnConcurrentWrites: true, writeDelayMs: 15 });
    const store = make({ maxAttempts: 12, baseDelayMs: 10 });
    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) => store.put('race', `w${i}`, { ifNoneMatch: '*' })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PreconditionFailedError);
    }
    // The 409 path really ran (and was retried into a 412 or the win).
    expect(server.requests.some((r) => r.status === 409)).toBe(true);
  });

  it('reports If-Match on a deleted key (S3 answers 404) as PreconditionFailedError', async () => {
    const store = make();
    const { etag } = await store.put('gone', 'x');
    await store.delete('gone');
    await expect(store.put('gone', 'y', { ifMatch: etag })).rejects.toBeInstanceOf(PreconditionFailedError);
  });

  it('passes SSE-KMS settings on PutObject and CreateMultipartUpload', async () => {
    const keyId = 'arn:aws:kms:us-east-1:111122223333:key/test';
    const store = make({ serverSideEncryption: 'aws:kms', sseKmsKeyId: keyId, uploadPartSize: 5 * MiB });
    await store.put('enc', 'secret');
    const src = join(scratch, 'sse.bin');
    await writeFile(src, randomBytes(6 * MiB));
    await store.putFile('enc-big', src);
    const writes = server.requests.filter(
      (r) =>
        (r.method === 'PUT' && !r.query.has('partNumber')) || (r.method === 'POST' && r.query.has('uploads')),
    );
    expect(writes).toHaveLength(2);
    for (const r of writes) {
      expect(r.headers['x-amz-server-side-encryption']).toBe('aws:kms');
      expect(r.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe(keyId);
    }
  });

  it('uploads multipart with create-only enforced at CompleteMultipartUpload, retrying a failed part', async () => {
    const store = make({ uploadPartSize: 5 * MiB, uploadConcurrency: 2 });
    const src = join(scratch, 'mpu.bin');
    const bytes = randomBytes(11 * MiB);
    await writeFile(src, bytes);
    server.failNext({ method: 'PUT', status: 503, code: 'SlowDown' });
    const { etag } = await store.putFile('segments/s1/graph.bin', src, { ifNoneMatch: '*' });
    expect(etag).toMatch(/-3"$/);
    expect(server.objects.get('b/idx/segments/s1/graph.bin')?.body.equals(bytes)).toBe(true);
    const complete = server.requests.find((r) => r.method === 'POST' && r.query.has('uploadId'));
    expect(complete?.headers['if-none-match']).toBe('*');

    // A second create-only multipart upload loses at Complete, is aborted, and leaves the object alone.
    await writeFile(src, randomBytes(11 * MiB));
    await expect(store.putFile('segments/s1/graph.bin', src, { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
    expect(server.requests.some((r) => r.method === 'DELETE' && r.query.has('uploadId'))).toBe(true);
    expect(server.objects.get('b/idx/segments/s1/graph.bin')?.etag).toBe(etag);
  });

  it('downloads with ranged GETs pinned to the etag, and retries a failed range', async () => {
    const store = make();
    const bytes = randomBytes(300_000);
    await store.put('dl', bytes);
    server.failNext({ method: 'GET', status: 503, code: 'SlowDown' });
    await store.getToFile('dl', join(scratch, 'dl.bin'), { partSize: 64 * 1024, concurrency: 4 });
    const ranged = server.requests.filter((r) => r.method === 'GET' && r.headers.range !== undefined);
    expect(ranged.filter((r) => r.status === 206)).toHaveLength(5);
    expect(ranged.every((r) => r.headers['if-match'] === server.objects.get('b/idx/dl')?.etag)).toBe(true);
  });
});

describe('isRetryable', () => {
  it('retries throttling, 5xx, conditional conflicts and socket errors, not client errors', () => {
    const sdk = (name: string, status?: number) =>
      Object.assign(new Error(name), { name, ...(status ? { $metadata: { httpStatusCode: status } } : {}) });
    expect(isRetryable(sdk('SlowDown', 503))).toBe(true);
    expect(isRetryable(sdk('InternalError', 500))).toBe(true);
    expect(isRetryable(sdk('ConditionalRequestConflict', 409))).toBe(true);
    // Node names socket errors plain 'Error' and keeps the errno in `code`.
    expect(isRetryable(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isRetryable(sdk('AccessDenied', 403))).toBe(false);
    expect(isRetryable(sdk('PreconditionFailed', 412))).toBe(false);
    expect(isRetryable(new TypeError('bug'))).toBe(false);
  });
});
