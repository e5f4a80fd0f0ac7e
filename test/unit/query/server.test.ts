import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createQueryServer,
  DEFAULT_WEB_DIR,
  type QueryService,
  type RunningQueryServer,
} from '../../../functions/query/src/index.ts';
import { seededUniform } from '../../../layers/encoder/src/fixture.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { buildTestIndex, openTestService, TEST_QUERY } from '../../helpers/query.ts';

const TOKEN = 'test-token-0123456789';
let cleanup: () => Promise<void>;
let service: QueryService;
let server: RunningQueryServer;
let open: RunningQueryServer;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(
  base: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        agent,
        // Without a length, Node sends no body framing for DELETE or OPTIONS: the body would read as the next request.
        headers: {
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
          ...headers,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  let root: string;
  ({ dir: root, cleanup } = await tempDir('cohort-server-'));
  const index = await buildTestIndex(root);
  service = await openTestService(index);
  const web = join(root, 'web');
  await mkdir(join(web, 'sub'), { recursive: true });
  await writeFile(join(web, 'index.html'), '<!doctype html><title>cohort</title>');
  await writeFile(join(web, 'app.js'), 'console.log(1);');
  await writeFile(join(web, 'app.css'), 'body{}');
  await writeFile(join(root, 'secret.txt'), 'outside');
  await symlink(join(root, 'secret.txt'), join(web, 'link.txt'));
  server = await createQueryServer({ service, port: 0, token: TOKEN, webDir: web });
  open = await createQueryServer({ service, port: 0, webDir: web });
});

afterAll(async () => {
  agent.destroy();
  await server?.close();
  await open?.close();
  await service?.close();
  await cleanup?.();
});

describe('createQueryServer', () => {
  it('binds to 127.0.0.1 by default', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers a search over HTTP with the API JSON', async () => {
    const r = await call(server.url, 'POST', '/v1/search', JSON.stringify({ query: TEST_QUERY, k: 2 }), auth);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).cohort.map((m: { patientId: string }) => m.patientId)).toEqual(['p1', 'p3']);
    expect(r.headers['content-security-policy']).toContain("default-src 'self'");
  });

  it('refuses /v1 calls without the token, or with a wrong one', async () => {
    const none = await call(server.url, 'POST', '/v1/search', '{"query":"x"}', {
      'content-type': 'application/json',
    });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    const wrong = await call(server.url, 'GET', '/v1/health', undefined, { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect((await call(server.url, 'GET', '/v1/health', undefined, auth)).status).toBe(200);
  });

  it('takes the local user as the caller when no token is set', async () => {
    expect((await call(open.url, 'GET', '/v1/health')).status).toBe(200);
  });

  it('answers an oversized body with 413 and stays up', async () => {
    const big = Buffer.alloc(200_000, 'a');
    const r = await call(server.url, 'POST', '/v1/search', big, auth);
    expect(r.status).toBe(413);
    expect((await call(server.url, 'GET', '/v1/health', undefined, auth)).status).toBe(200);
  });
});

describe('web page', () => {
  it('serves / as index.html and the other files with their content types and a strict CSP', async () => {
    const page = await call(server.url, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toMatch(/^default-src 'self'/);
    expect(page.body).toContain('<title>cohort</title>');
    expect((await call(server.url, 'GET', '/app.js')).headers['content-type']).toBe(
      'text/javascript; charset=utf-8',
    );
    expect((await call(server.url, 'GET', '/app.css')).headers['content-type']).toBe(
      'text/css; charset=utf-8',
    );
  });

  it.each([
    '/../secret.txt',
    '/%2e%2e/secret.txt',
    '/sub/..%2f..%2fsecret.txt',
    '/..%5csecret.txt',
    '/link.txt',
    '/sub',
    '/missing.html',
    '/%E0%A4%A',
  ])('does not serve %s', async (path) => {
    const r = await call(server.url, 'GET', path);
    expect(r.status).toBe(404);
    expect(r.body).not.toContain('outside');
  });

  it('defaults to the repository web directory', () => {
    expect(existsSync(join(DEFAULT_WEB_DIR, 'index.html'))).toBe(true);
  });
});

describe('fuzzing', () => {
  it('answers 5,000 malformed requests with 4xx only and stays up', async () => {
    const r = seededUniform(20261126);
    const int = (n: number) => Math.floor(r() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const oddStrings = ['\ud800', 'a\u0000b', '\u202e\u0007', 'x'.repeat(2001), '', '   ', '\u001b[31m'];
    // Values each field refuses (a value valid for one field may be valid JSON for another).
    const wrongValues: Record<string, readonly unknown[]> = {
      query: [null, true, 1.5, [], {}, 'x'.repeat(2001), ''],
      k: [null, true, 1.5, -1, 0, 1001, '5', [], {}],
      filters: [null, true, 1, 'x', [], { a: 1 }],
      assertion: [null, 'none', 1, []],
      minScore: [null, 'NaN', 1.5, -2, true, []],
      cursor: [null, 1, '!!!', 'x'.repeat(600)],
      format: [null, 'xml', 1],
      evidence: [0, 11, 1.5, 'x', null],
    };
    const fields = Object.keys(wrongValues);
    const malformedBody = (): string => {
      switch (int(9)) {
        case 0: // truncated JSON
          return JSON.stringify({ query: TEST_QUERY, k: 5 }).slice(0, 1 + int(25));
        case 1: // random bytes as text
          return Array.from({ length: 1 + int(200) }, () => String.fromCharCode(int(256))).join('');
        case 2: // a wrong type in one field
          {
            const field = pick(fields);
            return JSON.stringify({ query: TEST_QUERY, [field]: pick(wrongValues[field]!) });
          }
        case 3: // an odd string as the query
          return JSON.stringify({ query: pick(oddStrings) });
        case 4: // deep nesting
          return `${'['.repeat(1 + int(20000))}${']'.repeat(int(3))}`;
        case 5: // deep nesting inside a field
          return `{"query":"x","filters":${'{"a":'.repeat(1 + int(5000))}1${'}'.repeat(int(5000))}}`;
        case 6: // an unknown field
          return JSON.stringify({ query: TEST_QUERY, [`x${int(1000)}`]: int(10) });
        case 7: // not an object
          return pick(['[]', '"query"', '42', 'null', 'true', '{"query":"x"}{"query":"y"}']);
        default: // bad filter values
          return JSON.stringify({
            query: TEST_QUERY,
            filters: pick([
              { dateFrom: pick(['yesterday', '2020-02-30', '2020-1-1', 20200101]) },
              { sections: { include: 'history' } },
              { sections: { other: ['x'] } },
              { patientIds: [pick(oddStrings.filter((o) => (o.trim() === '' ? o === '' : true)))] },
              { noteTypes: Array.from({ length: 101 }, (_, i) => `t${i}`) },
            ]),
          });
      }
    };
    const statuses = new Map<number, number>();
    const one = async (i: number): Promise<void> => {
      let answer: Answer;
      const kind = int(10);
      let sent = '';
      if (kind < 6) {
        sent = malformedBody();
        answer = await call(server.url, 'POST', '/v1/search', sent, auth);
      } else if (kind === 6) {
        // Wrong methods on real paths.
        answer = await call(
          server.url,
          pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS']),
          pick(['/v1/search', '/v1/health', '/openapi.json']),
          '{}',
          auth,
        );
      } else if (kind === 7) {
        // Paths that do not exist.
        const path = pick([
          '/v1/search/',
          '/v1',
          '/v1/searchx',
          `/${'a'.repeat(int(4000))}`,
          '/v1/%00',
          '/v1/health/../search',
          `/x${i}`,
        ]);
        answer = await call(server.url, pick(['GET', 'POST']), path, undefined, auth);
      } else if (kind === 8) {
        // No or a wrong token.
        answer = await call(
          server.url,
          'POST',
          '/v1/search',
          JSON.stringify({ query: TEST_QUERY }),
          pick<Record<string, string>>([{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }]),
        );
      } else {
        // A valid body under another content type.
        answer = await call(server.url, 'POST', '/v1/search', JSON.stringify({ query: TEST_QUERY }), {
          ...auth,
          'content-type': pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data']),
        });
      }
      if (answer.status < 400 || answer.status >= 500 || answer.body === '') {
        throw new Error(
          `request ${i} (${kind}): ${answer.status} ${answer.body.slice(0, 100)} for ${sent.slice(0, 300)}`,
        );
      }
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      expect(answer.status, `request ${i}`).toBeGreaterThanOrEqual(400);
      expect(answer.status, `request ${i}`).toBeLessThan(500);
      if (answer.status !== 404 || answer.headers['content-type']?.includes('json')) {
        expect(() => JSON.parse(answer.body)).not.toThrow();
      }
      expect(answer.body).not.toMatch(/\.ts:\d+|node:internal/);
    };
    const total = 5000;
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < total) await one(next++);
      }),
    );
    // Malformed HTTP itself (below the router): the server closes those connections with 400.
    for (let i = 0; i < 20; i++) {
      const raw = await new Promise<string>((resolve) => {
        const url = new URL(server.url);
        const socket = connect(Number(url.port), url.hostname, () =>
          socket.end(`GARBAGE ${'\u0001'.repeat(i)} HTTP/9\r\n\r\n`),
        );
        let data = '';
        socket.on('data', (d) => (data += d.toString()));
        socket.on('close', () => resolve(data));
        socket.on('error', () => resolve(data));
      });
      expect(raw === '' || raw.startsWith('HTTP/1.1 400')).toBe(true);
    }
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).toBe(total);
    expect([...statuses.keys()].sort()).toEqual(expect.arrayContaining([400, 401, 404, 405, 415]));
    const health = await call(server.url, 'GET', '/v1/health', undefined, auth);
    expect(health.status).toBe(200);
  });
});
