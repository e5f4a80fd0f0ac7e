import { readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardHandler } from '../../../functions/query/src/handlers/shard.ts';
import {
  createRouter,
  openQueryService,
  type QueryService,
  type SearchResponse,
  ShardStore,
  shardOf,
} from '../../../functions/query/src/index.ts';
import { openShardSearcher } from '../../../functions/query/src/shards.ts';
import { ManifestStore } from '../../../layers/index/src/manifest.ts';
import { LocalDirectoryStore, type ObjectStore, S3Store } from '../../../layers/index/src/store/index.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';
import { embedTestQuery, standardNotes, TEST_QUERY, writeTestIndex } from '../../helpers/query.ts';
import { type RunningS3rver, startS3rver } from '../../helpers/s3rver.ts';

let root: string;
let cleanup: () => Promise<void>;
let bundle: string;
let dirStore: LocalDirectoryStore;
let s3: RunningS3rver;
let s3Options: Record<string, unknown>;
const services: QueryService[] = [];
const identity = { id: 'tester', kind: 'local' as const };

/** Writes the standard notes as four segments (so shards have something to split). */
async function writeSegments(store: ObjectStore, workDir: string, q: Float32Array, fingerprint: string) {
  const notes = standardNotes();
  const quarter = Math.ceil(notes.length / 4);
  for (let i = 0; i < 4; i++) {
    await writeTestIndex(store, {
      q,
      fingerprint,
      notes: notes.slice(i * quarter, (i + 1) * quarter),
      workDir,
      changeId: `segment-${i}`,
    });
  }
}

async function open(
  options: Partial<Parameters<typeof openQueryService>[0]> & { indexUri: string; name: string },
) {
  const service = await openQueryService({
    modelDir: bundle,
    audit: join(root, 'audit'),
    cacheDir: join(root, `cache-${options.name}`),
    threads: 1,
    ...options,
  });
  services.push(service);
  const router = createRouter({ service });
  return async (body: Record<string, unknown>): Promise<SearchResponse> => {
    const r = await router({
      method: 'POST',
      path: '/v1/search',
      headers: {},
      body: JSON.stringify(body),
      identity,
    });
    expect(r.status, r.body).toBe(200);
    return JSON.parse(r.body) as SearchResponse;
  };
}

/** The files in the segment cache of the service opened under `name`. */
async function cachedFiles(name: string): Promise<string[]> {
  const entries = await readdir(join(root, `cache-${name}`), { recursive: true, withFileTypes: true }).catch(
    () => [],
  );
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

const ranking = (r: SearchResponse) =>
  r.cohort.map((m) => [m.patientId, m.score, m.evidence.map((e) => e.noteId)]);

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-shards-'));
  bundle = await tinyBundle(root, { variants: ['fp32', 'int8'] });
  const { q, fingerprint } = await embedTestQuery(bundle);
  dirStore = new LocalDirectoryStore(join(root, 'index'), { fsync: false });
  await writeSegments(dirStore, join(root, 'work'), q, fingerprint);
  s3 = await startS3rver(['idx']);
  s3Options = {
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: s3.credentials,
    region: 'us-east-1',
  };
  const s3Store = new S3Store({ bucket: 'idx', prefix: 'cohort', ...s3Options });
  await writeSegments(s3Store, join(root, 'work-s3'), q, fingerprint);
});

afterAll(async () => {
  for (const s of services) await s.close();
  await s3?.close();
  await cleanup?.();
});

describe('shard assignment', () => {
  it('puts every segment in exactly one shard', async () => {
    const manifest = (await new ManifestStore(dirStore).latest())!;
    expect(manifest.segments).toHaveLength(4);
    const views = [0, 1, 2].map((i) => new ShardStore(dirStore, i, 3));
    const held = await Promise.all(
      views.map(async (v) => (await new ManifestStore(v).latest())!.segments.map((s) => s.id)),
    );
    expect(held.flat().sort()).toEqual(manifest.segments.map((s) => s.id).sort());
    for (const [i, ids] of held.entries()) for (const id of ids) expect(shardOf(id, 3)).toBe(i);
  });

  it('refuses writes through a shard view', async () => {
    await expect(new ShardStore(dirStore, 0, 2).put('x', 'y')).rejects.toThrow(/read-only/);
  });
});

describe('fan-out over worker shards', () => {
  it('finds the same cohort as one in-process index, top k and exhaustive', async () => {
    const single = await open({ indexUri: join(root, 'index'), name: 'single' });
    const sharded = await open({
      indexUri: join(root, 'index'),
      name: 'workers',
      shards: { kind: 'workers', count: 3 },
    });
    const topK = { query: TEST_QUERY, k: 8, assertion: 'any' };
    expect(ranking(await sharded(topK))).toEqual(ranking(await single(topK)));
    const exhaustive = { query: TEST_QUERY, k: 100, minScore: 0.2 };
    const a = await sharded(exhaustive);
    expect(ranking(a)).toEqual(ranking(await single(exhaustive)));
    expect(a.totalPatients).toBeGreaterThan(8);
    expect(a.index.chunks).toBe(72);
    // The shards read the directory index's segment files in place: nothing is copied.
    expect(await cachedFiles('workers')).toEqual([]);
  });

  it('reports the shards and their segments in health', async () => {
    const service = await openQueryService({
      modelDir: bundle,
      indexUri: join(root, 'index'),
      audit: join(root, 'audit'),
      cacheDir: join(root, 'cache-health'),
      shards: { kind: 'workers', count: 2 },
      threads: 1,
    });
    services.push(service);
    expect(await service.health()).toMatchObject({
      status: 'ok',
      shards: 2,
      segments: 4,
      chunks: 72,
      manifestVersion: 4,
    });
  });
});

describe('an index on an S3-protocol server', () => {
  it('answers the same cohort in process and over worker shards', async () => {
    const local = await open({ indexUri: join(root, 'index'), name: 'dir' });
    const onS3 = await open({ indexUri: 's3://idx/cohort', s3: s3Options, name: 's3' });
    const onS3Sharded = await open({
      indexUri: 's3://idx/cohort',
      s3: s3Options,
      name: 's3-workers',
      shards: { kind: 'workers', count: 2 },
    });
    const body = { query: TEST_QUERY, k: 5 };
    const expected = ranking(await local(body));
    expect(ranking(await onS3(body))).toEqual(expected);
    expect(ranking(await onS3Sharded(body))).toEqual(expected);
    expect(await cachedFiles('dir')).toEqual([]);
    // From S3 the segments are downloaded into each shard's cache.
    expect((await cachedFiles('s3-workers')).filter((f) => f.endsWith('graph.hnsw'))).toHaveLength(4);
    // Snippets come from the note texts stored on S3.
    expect((await onS3(body)).cohort[0]!.evidence[0]!.snippet).toContain('New-onset atrial fibrillation');
  });
});

describe('shard handler', () => {
  it('answers search, status and refresh requests for its share, and errors as messages', async () => {
    const handler = createShardHandler(() =>
      openShardSearcher({
        indexUri: join(root, 'index'),
        shard: 0,
        count: 1,
        cacheDir: join(root, 'cache-handler'),
      }),
    );
    const status = await handler({ action: 'status' });
    expect(status).toMatchObject({ action: 'status', segments: 4, chunks: 72, shards: 0 });
    const { q } = await embedTestQuery(bundle);
    const search = await handler({ action: 'search', vector: Array.from(q), k: 3 });
    expect(search.action).toBe('search');
    if (search.action !== 'search') return;
    expect(search.hits.map((h) => h.chunk.patientId)).toEqual(['p2', 'p1', 'p4']);
    const bad = await handler({ action: 'search', vector: [1, 2, 3], k: 3 });
    expect(bad).toMatchObject({ action: 'error' });
    expect(await handler({ action: 'refresh' })).toMatchObject({ action: 'refresh', changed: false });
  });
});

describe('fan-out over shard functions (Lambda Invoke API on loopback)', () => {
  /**
   * A stand-in for the Lambda service at its HTTP boundary (POST
   * /2015-03-31/functions/NAME/invocations), running the real shard handler for each function name,
   * so the API's LambdaShardClient, the SDK and the shard handler are exercised as deployed.
   */
  async function lambdaService(handlers: Record<string, (event: never) => Promise<unknown>>) {
    const server: Server = createServer((req, res) => {
      const m = /^\/2015-03-31\/functions\/([^/]+)\/invocations/.exec(req.url ?? '');
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', async () => {
        const handler = m ? handlers[decodeURIComponent(m[1]!)] : undefined;
        if (!handler) {
          res.writeHead(404, {
            'content-type': 'application/json',
            'x-amzn-errortype': 'ResourceNotFoundException',
          });
          return res.end(JSON.stringify({ message: 'Function not found' }));
        }
        try {
          const out = await handler(JSON.parse(Buffer.concat(parts).toString()) as never);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(out));
        } catch (error) {
          res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' });
          res.end(JSON.stringify({ errorMessage: (error as Error).message }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new LambdaClient({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    return { client, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('merges the shard functions into the same cohort as one index, and fails whole when one fails', async () => {
    const shard = (i: number) =>
      createShardHandler(() =>
        openShardSearcher({
          indexUri: join(root, 'index'),
          shard: i,
          count: 2,
          cacheDir: join(root, `cache-fn-${i}`),
        }),
      );
    const lambda = await lambdaService({
      'cohort-shard-0': shard(0),
      'cohort-shard-1': shard(1),
      'cohort-shard-broken': async () => {
        throw new Error('out of memory');
      },
    });
    try {
      const single = await open({ indexUri: join(root, 'index'), name: 'single-fn' });
      const sharded = await open({
        indexUri: join(root, 'index'),
        name: 'lambda',
        shards: { kind: 'lambda', functions: ['cohort-shard-0', 'cohort-shard-1'], client: lambda.client },
      });
      const body = { query: TEST_QUERY, k: 6 };
      expect(ranking(await sharded(body))).toEqual(ranking(await single(body)));
      const exhaustive = { query: TEST_QUERY, k: 100, minScore: 0.2, assertion: 'any' };
      expect(ranking(await sharded(exhaustive))).toEqual(ranking(await single(exhaustive)));

      const broken = await openQueryService({
        modelDir: bundle,
        indexUri: join(root, 'index'),
        audit: join(root, 'audit'),
        cacheDir: join(root, 'cache-broken'),
        shards: {
          kind: 'lambda',
          functions: ['cohort-shard-0', 'cohort-shard-broken'],
          client: lambda.client,
        },
        threads: 1,
      });
      services.push(broken);
      const r = await createRouter({ service: broken })({
        method: 'POST',
        path: '/v1/search',
        headers: {},
        body: JSON.stringify(body),
        identity,
      });
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body).error.message).toContain('cohort-shard-broken');
    } finally {
      await lambda.close();
    }
  });
});
