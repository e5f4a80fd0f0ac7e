import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRouter,
  openApiDocument,
  type QueryService,
  type Router,
  type RouterRequest,
} from '../../../functions/query/src/index.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { buildTestIndex, openTestService, TEST_QUERY, type TestIndex } from '../../helpers/query.ts';

let cleanup: () => Promise<void>;
let index: TestIndex;
let service: QueryService;
let router: Router;
const identity = { id: 'alice', kind: 'jwt' as const };

const post = (body: unknown, extra: Partial<RouterRequest> = {}) =>
  router({
    method: 'POST',
    path: '/v1/search',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    identity,
    ...extra,
  });

const errorOf = (r: { body: string }) =>
  JSON.parse(r.body).error as { code: string; message: string; issues?: { path: string; message: string }[] };

beforeAll(async () => {
  let root: string;
  ({ dir: root, cleanup } = await tempDir('cohort-router-'));
  index = await buildTestIndex(root);
  service = await openTestService(index);
  router = createRouter({ service });
});

afterAll(async () => {
  await service?.close();
  await cleanup?.();
});

describe('request validation', () => {
  it('rejects unknown fields, at the top and inside filters, naming them', async () => {
    const r = await post({ query: 'x', minscore: 0.5, filters: { noteType: ['a'] } });
    expect(r.status).toBe(400);
    const e = errorOf(r);
    expect(e.code).toBe('invalid_request');
    expect(e.issues).toEqual(
      expect.arrayContaining([
        { path: '', message: 'unknown field(s): minscore' },
        { path: 'filters', message: 'unknown field(s): noteType' },
      ]),
    );
  });

  it.each([
    ['an empty query', { query: '' }, 'query'],
    ['a blank query', { query: '   ' }, 'query'],
    ['a query over 2,000 characters', { query: 'a'.repeat(2001) }, 'query'],
    ['k above 1,000', { query: 'x', k: 1001 }, 'k'],
    ['k of 0', { query: 'x', k: 0 }, 'k'],
    ['a fractional k', { query: 'x', k: 2.5 }, 'k'],
    ['an unknown format', { query: 'x', format: 'xml' }, 'format'],
    ['an unknown assertion mode', { query: 'x', assertion: 'negated' }, 'assertion'],
    ['minScore above 1', { query: 'x', minScore: 1.5 }, 'minScore'],
    ['a date that is not ISO 8601', { query: 'x', filters: { dateFrom: '03/01/2020' } }, 'filters.dateFrom'],
    ['an impossible date', { query: 'x', filters: { dateTo: '2020-13-45' } }, 'filters.dateTo'],
    ['30 February', { query: 'x', filters: { dateTo: '2020-02-30' } }, 'filters.dateTo'],
    [
      'dateFrom after dateTo',
      { query: 'x', filters: { dateFrom: '2021-01-01', dateTo: '2020-01-01' } },
      'filters.dateFrom',
    ],
    [
      'too many patient ids',
      { query: 'x', filters: { patientIds: Array.from({ length: 1001 }, (_, i) => `p${i}`) } },
      'filters.patientIds',
    ],
    ['a lone surrogate', { query: 'atrial \ud800 fibrillation' }, 'query'],
    ['a NUL character', { query: 'atrial\u0000' }, 'query'],
    ['a query of the wrong type', { query: 42 }, 'query'],
  ])('rejects %s with a field-level message', async (_what, body, path) => {
    const r = await post(body);
    expect(r.status).toBe(400);
    expect(errorOf(r).issues?.map((i) => i.path)).toContain(path);
  });

  it('accepts a query of exactly 2,000 characters and the largest k', async () => {
    const r = await post({ query: `${TEST_QUERY} `.repeat(40).slice(0, 2000), k: 1000 });
    expect(r.status).toBe(200);
  });

  it('answers bad JSON, a non-object body and another content type with 4xx JSON errors', async () => {
    expect((await post('{"query": ')).status).toBe(400);
    expect((await post('[]')).status).toBe(400);
    expect((await post('null')).status).toBe(400);
    const media = await post({ query: 'x' }, { headers: { 'content-type': 'text/plain' } });
    expect(media.status).toBe(415);
    expect(errorOf(media).code).toBe('unsupported_media_type');
  });

  it('answers a body over 64 KiB with 413', async () => {
    const r = await post({ query: 'x', filters: { noteTypes: ['a'.repeat(70_000)] } });
    expect(r.status).toBe(413);
    expect(errorOf(r).code).toBe('payload_too_large');
  });

  it('never echoes the query or a stack trace in an error', async () => {
    const r = await post({ query: 'patient Jane Roe with sepsis', k: 'many' });
    expect(r.body).not.toContain('Jane');
    expect(r.body).not.toMatch(/\bat .*\.ts:\d+/);
  });
});

describe('routes', () => {
  it('answers 404 for an unknown path and 405 with Allow for a wrong method', async () => {
    const missing = await router({ method: 'GET', path: '/v2/search', headers: {}, identity });
    expect(missing.status).toBe(404);
    expect(errorOf(missing).code).toBe('not_found');
    const wrong = await router({ method: 'GET', path: '/v1/search', headers: {}, identity });
    expect(wrong.status).toBe(405);
    expect(wrong.headers['allow']).toBe('POST');
  });

  it('refuses a search and health without an identity', async () => {
    const r = await post({ query: 'x' }, { identity: undefined });
    expect(r.status).toBe(401);
    expect(errorOf(r).code).toBe('unauthorized');
    expect((await router({ method: 'GET', path: '/v1/health', headers: {} })).status).toBe(401);
  });

  it('reports health: manifest version, segments, model fingerprint, cold then warm', async () => {
    const fresh = createRouter({
      service: await openTestService(index),
    });
    const cold = await fresh({ method: 'GET', path: '/v1/health', headers: {}, identity });
    expect(cold.status).toBe(200);
    expect(JSON.parse(cold.body)).toEqual({
      status: 'ok',
      container: 'cold',
      manifestVersion: 1,
      segments: 1,
      chunks: 72,
      model: { fingerprint: index.fingerprint },
      shards: 0,
    });
    await fresh({
      method: 'POST',
      path: '/v1/search',
      headers: {},
      body: JSON.stringify({ query: 'x' }),
      identity,
    });
    const warm = await fresh({ method: 'GET', path: '/v1/health', headers: {}, identity });
    expect(JSON.parse(warm.body).container).toBe('warm');
  });

  it('answers 503 with the reason when the index cannot be opened, and tries again later', async () => {
    let attempts = 0;
    const broken = createRouter({
      service: async () => {
        attempts++;
        throw new Error('no manifest at s3://nowhere/index');
      },
    });
    const a = await broken({
      method: 'POST',
      path: '/v1/search',
      headers: {},
      body: '{"query":"x"}',
      identity,
    });
    expect(a.status).toBe(503);
    expect(errorOf(a)).toMatchObject({ code: 'index_unavailable' });
    expect(errorOf(a).message).toContain('no manifest');
    const h = await broken({ method: 'GET', path: '/v1/health', headers: {}, identity });
    expect(h.status).toBe(503);
    expect(JSON.parse(h.body)).toMatchObject({
      status: 'unavailable',
      reason: expect.stringContaining('no manifest'),
    });
    expect(attempts).toBe(2);
  });

  it('serves an OpenAPI 3.1 document generated from the schemas, without auth', async () => {
    const r = await router({ method: 'GET', path: '/openapi.json', headers: {} });
    expect(r.status).toBe(200);
    const doc = JSON.parse(r.body);
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(['/v1/search', '/v1/health', '/openapi.json']);
    const request = doc.components.schemas.SearchRequest;
    expect(request.additionalProperties).toBe(false);
    expect(request.required).toEqual(['query']);
    expect(request.properties.query).toMatchObject({ type: 'string', minLength: 1, maxLength: 2000 });
    expect(request.properties.k).toMatchObject({ default: 50, maximum: 1000 });
    expect(request.properties.format.enum).toEqual(['json', 'csv', 'fhir-group']);
    expect(request.properties.filters.$ref).toBe('#/components/schemas/SearchFilters');
    expect(doc.components.schemas.SearchResponse.required).toContain('cohort');
    expect(openApiDocument()).toEqual(doc);
  });
});

describe('refusals', () => {
  const open = (over: Parameters<typeof openTestService>[1]) => openTestService(index, over);

  it('answers 429 past the searches in flight, and serves again after', async () => {
    const busy = await open({ maxInFlight: 1 });
    const r = createRouter({ service: busy });
    const body = JSON.stringify({ query: TEST_QUERY });
    const [a, b] = await Promise.all([
      r({ method: 'POST', path: '/v1/search', headers: {}, body, identity }),
      r({ method: 'POST', path: '/v1/search', headers: {}, body, identity }),
    ]);
    expect([a.status, b.status]).toEqual([200, 429]);
    expect(b.headers['retry-after']).toBe('1');
    expect((await r({ method: 'POST', path: '/v1/search', headers: {}, body, identity })).status).toBe(200);
    await busy.close();
  });

  it('refuses to answer a search it cannot audit (503)', async () => {
    const { writeFile } = await import('node:fs/promises');
    const blocker = `${index.auditDir}-blocker`;
    await writeFile(blocker, 'a file where the audit directory should be');
    const unaudited = await open({ audit: `${blocker}/audit` });
    const r = await createRouter({ service: unaudited })({
      method: 'POST',
      path: '/v1/search',
      headers: {},
      body: JSON.stringify({ query: TEST_QUERY }),
      identity,
    });
    expect(r.status).toBe(503);
    expect(errorOf(r).message).toContain('audit');
    expect(r.body).not.toContain('cohort');
    await unaudited.close();
  });

  it('answers 503 for an empty index and for an index of another model', async () => {
    const empty = await open({ indexUri: `${index.indexDir}-empty`, cacheDir: `${index.cacheDir}-empty` });
    const health = await createRouter({ service: empty })({
      method: 'GET',
      path: '/v1/health',
      headers: {},
      identity,
    });
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body).reason).toMatch(/no manifest/);
    await empty.close();

    const { LocalDirectoryStore } = await import('../../../layers/index/src/store/local.ts');
    const { writeTestIndex, standardNotes } = await import('../../helpers/query.ts');
    const otherDir = `${index.indexDir}-other-model`;
    await writeTestIndex(new LocalDirectoryStore(otherDir, { fsync: false }), {
      q: index.q,
      fingerprint: 'sha256:another-model',
      notes: standardNotes().slice(0, 2),
      workDir: `${index.workDir}-other`,
    });
    const mismatch = createRouter({
      service: () => open({ indexUri: otherDir, cacheDir: `${index.cacheDir}-other` }),
    });
    const r = await mismatch({
      method: 'POST',
      path: '/v1/search',
      headers: {},
      body: '{"query":"x"}',
      identity,
    });
    expect(r.status).toBe(503);
    expect(errorOf(r).message).toContain('sha256:another-model');
  });
});

describe('warm container', () => {
  it('opens the service once and reuses it for every request', async () => {
    let opened = 0;
    const r = createRouter({
      service: async () => {
        opened++;
        return service;
      },
    });
    for (let i = 0; i < 3; i++) {
      const a = await r({
        method: 'POST',
        path: '/v1/search',
        headers: {},
        body: JSON.stringify({ query: `q${i}` }),
        identity,
      });
      expect(a.status).toBe(200);
    }
    expect(opened).toBe(1);
  });

  it('re-checks the manifest no more often than the refresh interval', async () => {
    const { LocalDirectoryStore } = await import('../../../layers/index/src/store/local.ts');
    const { writeTestIndex, standardNotes } = await import('../../helpers/query.ts');
    const { IndexWriter } = await import('../../../layers/index/src/writer.ts');
    const dir = `${index.indexDir}-refresh`;
    const store = new LocalDirectoryStore(dir, { fsync: false });
    await writeTestIndex(store, {
      q: index.q,
      fingerprint: index.fingerprint,
      notes: standardNotes(),
      workDir: `${index.workDir}-refresh`,
    });
    const slow = await openTestService(index, {
      indexUri: dir,
      cacheDir: `${index.cacheDir}-refresh`,
      refreshIntervalMs: 60_000,
    });
    const version = async () => (await slow.health()).manifestVersion;
    expect(await version()).toBe(1);
    const writer = new IndexWriter(store, {
      modelFingerprint: index.fingerprint,
      dims: index.q.length,
      workDir: `${index.workDir}-refresh`,
    });
    await writer.deleteNotes(['n1'], 'delete-n1');
    // Within the interval the loaded manifest is used without touching the store.
    expect(await version()).toBe(1);
    await slow.close();
  });
});

describe('closing', () => {
  it('lets the searches in flight finish before releasing the model', async () => {
    const closing = await openTestService(index);
    const pending = closing.search(
      (await import('../../../functions/query/src/schemas.ts')).SearchRequestSchema.parse({
        query: TEST_QUERY,
        k: 2,
      }),
      identity,
    );
    await closing.close();
    expect((await pending).cohort.map((m) => m.patientId)).toEqual(['p1', 'p3']);
  });
});
