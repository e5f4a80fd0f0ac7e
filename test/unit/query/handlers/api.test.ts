import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ApiEvent, createApiHandler, identityOf } from '../../../../functions/query/src/handlers/api.ts';
import { createRouter, type QueryService } from '../../../../functions/query/src/index.ts';
import { tempDir } from '../../../helpers/encoder.ts';
import { buildTestIndex, openTestService, TEST_QUERY } from '../../../helpers/query.ts';

/** An HTTP API v2 event as API Gateway sends it (the boundary is mocked: this is its documented shape). */
function event(options: {
  method?: string;
  path?: string;
  body?: string;
  base64?: boolean;
  authorizer?: ApiEvent['requestContext']['authorizer'];
}): ApiEvent {
  const method = options.method ?? 'POST';
  const path = options.path ?? '/v1/search';
  return {
    version: '2.0',
    routeKey: `${method} ${path}`,
    rawPath: path,
    rawQueryString: '',
    headers: { 'Content-Type': 'application/json' },
    isBase64Encoded: options.base64 ?? false,
    ...(options.body === undefined ? {} : { body: options.body }),
    requestContext: {
      accountId: '123456789012',
      apiId: 'api',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '10.0.0.1', userAgent: 'test' },
      requestId: 'req-1',
      routeKey: `${method} ${path}`,
      stage: '$default',
      time: '26/Nov/2026:10:00:00 +0000',
      timeEpoch: 0,
      ...(options.authorizer ? { authorizer: options.authorizer } : {}),
    },
  } as ApiEvent;
}

const iam = { iam: { userArn: 'arn:aws:iam::123456789012:role/analyst', callerId: 'AROA:alice' } };
const jwt = { jwt: { claims: { sub: 'user-42', iss: 'https://idp.example.com' } } };

let cleanup: () => Promise<void>;
let service: QueryService;
let handler: ReturnType<typeof createApiHandler>;

beforeAll(async () => {
  let root: string;
  ({ dir: root, cleanup } = await tempDir('cohort-api-'));
  const index = await buildTestIndex(root);
  service = await openTestService(index);
  handler = createApiHandler(createRouter({ service }));
});

afterAll(async () => {
  await service?.close();
  await cleanup?.();
});

describe('identityOf', () => {
  it('reads an IAM principal, JWT claims, or nothing', () => {
    expect(identityOf(event({ authorizer: iam }))).toEqual({ id: iam.iam.userArn, kind: 'iam' });
    expect(identityOf(event({ authorizer: jwt }))).toEqual({
      id: 'https://idp.example.com#user-42',
      kind: 'jwt',
    });
    expect(identityOf(event({}))).toBeUndefined();
    expect(identityOf(event({ authorizer: { jwt: { claims: {} } } }))).toBeUndefined();
  });
});

describe('api handler', () => {
  it('answers a search from an IAM caller', async () => {
    const r = await handler(event({ body: JSON.stringify({ query: TEST_QUERY, k: 2 }), authorizer: iam }));
    if (typeof r === 'string') throw new Error('structured result expected');
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body!).cohort.map((m: { patientId: string }) => m.patientId)).toEqual(['p1', 'p3']);
  });

  it('decodes a base64 body from a JWT caller', async () => {
    const body = Buffer.from(JSON.stringify({ query: TEST_QUERY, k: 1, format: 'csv' })).toString('base64');
    const r = await handler(event({ body, base64: true, authorizer: jwt }));
    if (typeof r === 'string') throw new Error('structured result expected');
    expect(r.statusCode).toBe(200);
    expect(r.headers!['content-type']).toBe('text/csv; charset=utf-8');
  });

  it('refuses a request whose context names no caller', async () => {
    const r = await handler(event({ body: JSON.stringify({ query: TEST_QUERY }) }));
    if (typeof r === 'string') throw new Error('structured result expected');
    expect(r.statusCode).toBe(401);
    expect(JSON.parse(r.body!)).toEqual({
      error: { code: 'unauthorized', message: 'authentication required' },
    });
  });

  it('routes a path under a named stage', async () => {
    const e = event({ method: 'GET', path: '/prod/v1/health', authorizer: iam });
    const r = await handler({ ...e, requestContext: { ...e.requestContext, stage: 'prod' } });
    if (typeof r === 'string') throw new Error('structured result expected');
    expect(r.statusCode).toBe(200);
  });

  it('routes health and answers unknown routes with 404', async () => {
    const h = await handler(event({ method: 'GET', path: '/v1/health', authorizer: iam }));
    const n = await handler(event({ method: 'GET', path: '/admin', authorizer: iam }));
    if (typeof h === 'string' || typeof n === 'string') throw new Error('structured result expected');
    expect(h.statusCode).toBe(200);
    expect(n.statusCode).toBe(404);
  });

  it('publishes request counts and latency as embedded metrics, without query text', async () => {
    const metrics = new Metrics({ namespace: 'CohortSearch', serviceName: 'cohort-query' });
    const measured = createApiHandler(createRouter({ service }), metrics);
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await measured(event({ body: JSON.stringify({ query: TEST_QUERY }), authorizer: iam }));
      await measured(event({ body: '{not json', authorizer: iam }));
    } finally {
      spy.mockRestore();
    }
    const emf = lines.filter((l) => l.includes('"CloudWatchMetrics"')).map((l) => JSON.parse(l));
    expect(emf).toHaveLength(2);
    expect(emf[0]).toMatchObject({ service: 'cohort-query', Requests: 1, ClientErrors: 0, ServerErrors: 0 });
    expect(emf[1]).toMatchObject({ Requests: 1, ClientErrors: 1, ServerErrors: 0 });
    expect(emf[0].LatencyMs).toBeGreaterThan(0);
    expect(emf[0]._aws.CloudWatchMetrics[0].Namespace).toBe('CohortSearch');
    expect(lines.join('')).not.toContain(TEST_QUERY);
  });
});
