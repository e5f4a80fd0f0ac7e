import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HubDownloadError, IntegrityError } from '../../../layers/encoder/src/errors.ts';
import { writeRandomBertCheckpoint } from '../../../layers/encoder/src/fixture.ts';
import {
  defaultCacheDir,
  type HubProgressEvent,
  type PullOptions,
  pullCheckpoint,
} from '../../../layers/encoder/src/hub.ts';

const REPO = 'emilyalsentzer/Bio_Discharge_Summary_BERT';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const FILES = ['config.json', 'vocab.txt', 'model.safetensors'] as const;
const LFS = new Set<string>(['model.safetensors']);
const TOKEN = 'hf_test_token_123';

/** A request as the fake hub saw it. */
interface Seen {
  server: 'hub' | 'cdn';
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  status?: number;
}

/** How the fake hub misbehaves; reset before every test. */
interface Behaviour {
  /** Destroy the socket after this many body bytes, on the first request for model.safetensors only. */
  cutAfter?: number;
  /** Answer range requests with the whole file (HTTP 200). */
  ignoreRange?: boolean;
  /** Flip one byte of this file's served content. */
  corrupt?: string;
  /** Answer the first N API requests with HTTP 503. */
  failApi?: number;
  /** Answer 401 unless the right token is sent. */
  requireToken?: boolean;
  /** Repo whose listing lacks the weights. */
  weightlessRepo?: string;
}

let source: string;
const content = new Map<string, Buffer>();
let hub: Server;
let cdn: Server;
let hubUrl: string;
let cdnUrl: string;
let seen: Seen[] = [];
let behaviour: Behaviour = {};
let safetensorsRequests = 0;
let cacheDir: string;

function gitBlobSha1(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function listing(repo: string) {
  const names = repo === behaviour.weightlessRepo ? FILES.filter((f) => !LFS.has(f)) : FILES;
  return {
    id: repo,
    sha: COMMIT,
    siblings: [
      { rfilename: '.gitattributes', size: 10, blobId: 'a'.repeat(40) },
      ...names.map((name) => {
        const bytes = content.get(name)!;
        return LFS.has(name)
          ? {
              rfilename: name,
              size: bytes.length,
              blobId: 'b'.repeat(40),
              lfs: { sha256: sha256(bytes), size: bytes.length },
            }
          : { rfilename: name, size: bytes.length, blobId: gitBlobSha1(bytes) };
      }),
    ],
  };
}

function serveFile(req: IncomingMessage, res: ServerResponse, name: string): void {
  let bytes = content.get(name)!;
  if (behaviour.corrupt === name) {
    bytes = Buffer.from(bytes);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  }
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  let start = 0;
  if (range && !behaviour.ignoreRange) {
    start = Number(range[1]);
    if (start >= bytes.length) {
      res.writeHead(416, { 'content-range': `bytes */${bytes.length}` }).end();
      return;
    }
    res.writeHead(206, {
      'content-length': bytes.length - start,
      'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
    });
  } else {
    res.writeHead(200, { 'content-length': bytes.length });
  }
  const body = bytes.subarray(start);
  if (name === 'model.safetensors' && ++safetensorsRequests === 1 && behaviour.cutAfter !== undefined) {
    // Flush part of the body, then drop the connection as a flaky network would.
    res.write(body.subarray(0, behaviour.cutAfter), () => res.socket?.destroy());
    return;
  }
  res.end(body);
}

function handler(server: 'hub' | 'cdn') {
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: Seen = {
      server,
      path: url.pathname,
      range: req.headers.range,
      authorization: req.headers.authorization,
    };
    seen.push(entry);
    res.on('finish', () => (entry.status = res.statusCode));
    if (behaviour.requireToken && server === 'hub' && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
      return;
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api && server === 'hub') {
      const [, repo, revision] = api;
      if (behaviour.failApi && behaviour.failApi-- > 0) {
        res.writeHead(503).end();
        return;
      }
      if (url.searchParams.get('blobs') !== 'true' || ![REPO, behaviour.weightlessRepo].includes(repo)) {
        res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
        return;
      }
      if (decodeURIComponent(revision!) !== 'main' && revision !== COMMIT) {
        res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(listing(repo!)));
      return;
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([0-9a-f]{40})\/([^/]+)$/.exec(url.pathname);
    if (
      resolve &&
      server === 'hub' &&
      resolve[1] === REPO &&
      resolve[2] === COMMIT &&
      content.has(resolve[3]!)
    ) {
      const name = resolve[3]!;
      if (LFS.has(name)) {
        // The real hub sends LFS files to a CDN on another host.
        res.writeHead(302, { location: `${cdnUrl}/lfs/${sha256(content.get(name)!)}` }).end();
        return;
      }
      serveFile(req, res, name);
      return;
    }
    const lfs = /^\/lfs\/([0-9a-f]{64})$/.exec(url.pathname);
    const lfsName = lfs && [...LFS].find((name) => sha256(content.get(name)!) === lfs[1]);
    if (lfsName && server === 'cdn') {
      serveFile(req, res, lfsName);
      return;
    }
    res.writeHead(404).end();
  };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function pull(options: Partial<PullOptions> = {}) {
  return pullCheckpoint({
    repoId: REPO,
    endpoint: hubUrl,
    cacheDir,
    token: null,
    retryDelayMs: 1,
    ...options,
  });
}

const resolveRequests = () => seen.filter((s) => s.path.includes('/resolve/') || s.path.startsWith('/lfs/'));

beforeAll(async () => {
  source = await mkdtemp(join(tmpdir(), 'cohort-hub-src-'));
  await writeRandomBertCheckpoint(source);
  for (const name of FILES) content.set(name, await readFile(join(source, name)));
  hub = createServer(handler('hub'));
  cdn = createServer(handler('cdn'));
  hubUrl = await listen(hub);
  cdnUrl = await listen(cdn);
});

afterAll(async () => {
  hub.closeAllConnections();
  cdn.closeAllConnections();
  await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
  await rm(source, { recursive: true, force: true });
});

beforeEach(async () => {
  seen = [];
  behaviour = {};
  safetensorsRequests = 0;
  cacheDir = await mkdtemp(join(tmpdir(), 'cohort-hub-cache-'));
});

afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

async function expectSameAsSource(dir: string): Promise<void> {
  for (const name of FILES) {
    expect((await readFile(join(dir, name))).equals(content.get(name)!), name).toBe(true);
  }
}

describe('pullCheckpoint', () => {
  it('downloads config.json, vocab.txt and model.safetensors equal to the source bytes', async () => {
    const pulled = await pull();

    expect(pulled.commitSha).toBe(COMMIT);
    expect(pulled.revision).toBe('main');
    expect(pulled.offline).toBe(false);
    expect(pulled.dir).toBe(join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT));
    await expectSameAsSource(pulled.dir);
    expect(pulled.files).toEqual(
      FILES.map((name) => ({ name, bytes: content.get(name)!.length, sha256: sha256(content.get(name)!) })),
    );
    expect((await readdir(pulled.dir)).sort()).toEqual([...FILES].sort());
    const ref = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', 'refs', 'main');
    expect((await readFile(ref, 'utf8')).trim()).toBe(COMMIT);
    // The weights came from the redirect target, not from the hub itself.
    expect(seen.some((s) => s.server === 'cdn' && s.status === 200)).toBe(true);
  });

  it('resumes with a Range request after the connection drops midway, within the same call', async () => {
    behaviour.cutAfter = 1_000_000;

    const pulled = await pull();

    await expectSameAsSource(pulled.dir);
    const ranged = seen.filter((s) => s.server === 'cdn' && s.range);
    expect(ranged.length).toBeGreaterThan(0);
    const start = Number(/^bytes=(\d+)-$/.exec(ranged[0]!.range!)![1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(1_000_000);
    expect(ranged[0]!.status).toBe(206);
  });

  it('keeps the partial file when retries run out, and the next call resumes it', async () => {
    behaviour.cutAfter = 1_000_000;

    const failure = await pull({ retries: 0 }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/resumes/);
    const dir = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT);
    const partial = (await stat(join(dir, 'model.safetensors.incomplete'))).size;
    expect(partial).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);

    const events: HubProgressEvent[] = [];
    const pulled = await pull({ retries: 0, onProgress: (e) => events.push(e) });

    await expectSameAsSource(pulled.dir);
    expect(seen.some((s) => s.server === 'cdn' && s.range === `bytes=${partial}-` && s.status === 206)).toBe(
      true,
    );
    expect(events.filter((e) => e.file === 'model.safetensors')[0]).toMatchObject({
      receivedBytes: partial,
      resumedFrom: partial,
    });
  });

  it('ends correct when the server ignores Range and sends the whole file again', async () => {
    behaviour.cutAfter = 1_000_000;
    behaviour.ignoreRange = true;

    const pulled = await pull();

    await expectSameAsSource(pulled.dir);
    expect(seen.some((s) => s.server === 'cdn' && s.range && s.status === 200)).toBe(true);
  });

  it.each(['model.safetensors', 'vocab.txt'])(
    'rejects a corrupted byte in %s and leaves no file',
    async (name) => {
      behaviour.corrupt = name;

      const failure = await pull().catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(IntegrityError);
      const message = (failure as Error).message;
      expect(message).toContain(name);
      const bytes = content.get(name)!;
      expect(message).toContain(LFS.has(name) ? sha256(bytes) : gitBlobSha1(bytes));
      expect(message).toMatch(/found [0-9a-f]{40}/);
      const dir = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT);
      expect(existsSync(join(dir, name))).toBe(false);
      expect(existsSync(join(dir, `${name}.incomplete`))).toBe(false);
    },
  );

  it('says a repo that does not exist was not found', async () => {
    const failure = await pull({ repoId: 'nobody/no-such-model' }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/nobody\/no-such-model.*not found.*404/);
  });

  it('says a revision that does not exist was not found', async () => {
    const failure = await pull({ revision: 'v9' }).catch((error: unknown) => error);

    expect((failure as Error).message).toMatch(/revision v9 of .* not found/);
  });

  it('asks for HF_TOKEN on 401, and passes with the token', async () => {
    behaviour.requireToken = true;

    const failure = await pull().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/HF_TOKEN/);
    expect((failure as Error).message).not.toContain(TOKEN);

    const pulled = await pull({ token: TOKEN });
    await expectSameAsSource(pulled.dir);
  });

  it('lists what the repo has when the weights are missing', async () => {
    behaviour.weightlessRepo = 'acme/tokenizer-only';

    const failure = await pull({ repoId: 'acme/tokenizer-only' }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/missing model\.safetensors or pytorch_model\.bin/);
    expect((failure as Error).message).toMatch(/\.gitattributes, config\.json, vocab\.txt/);
  });

  it('serves a second pull from the cache without fetching any file', async () => {
    const first = await pull();
    seen = [];

    const events: HubProgressEvent[] = [];
    const second = await pull({ onProgress: (e) => events.push(e) });

    expect(resolveRequests()).toEqual([]);
    expect(second.files).toEqual(first.files);
    expect(second.dir).toBe(first.dir);
    expect(events.map((e) => e.receivedBytes)).toEqual(events.map((e) => e.totalBytes));
  });

  it('sends the token to the hub but not to the redirect target on another host', async () => {
    await pull({ token: TOKEN });

    const hubRequests = seen.filter((s) => s.server === 'hub');
    const cdnRequests = seen.filter((s) => s.server === 'cdn');
    expect(hubRequests.length).toBeGreaterThanOrEqual(4);
    expect(cdnRequests.length).toBeGreaterThanOrEqual(1);
    for (const s of hubRequests) expect(s.authorization).toBe(`Bearer ${TOKEN}`);
    for (const s of cdnRequests) expect(s.authorization).toBeUndefined();
  });

  it('reports monotonic progress per file, ending at totalBytes', async () => {
    const events: HubProgressEvent[] = [];

    await pull({ onProgress: (e) => events.push(e) });

    for (const name of FILES) {
      const mine = events.filter((e) => e.file === name);
      expect(mine.length).toBeGreaterThan(0);
      for (let i = 1; i < mine.length; i++) {
        expect(mine[i]!.receivedBytes).toBeGreaterThanOrEqual(mine[i - 1]!.receivedBytes);
      }
      expect(mine.at(-1)!.receivedBytes).toBe(content.get(name)!.length);
      expect(mine.every((e) => e.totalBytes === content.get(name)!.length && e.resumedFrom === 0)).toBe(true);
    }
    expect(events.filter((e) => e.file === 'model.safetensors').length).toBeGreaterThan(2);
  });

  it('stops on abort with the signal reason and keeps the partial file for the next pull', async () => {
    const controller = new AbortController();
    const reason = new Error('user cancelled');

    const failure = await pull({
      signal: controller.signal,
      onProgress: (e) => {
        if (e.file === 'model.safetensors' && e.receivedBytes > 0) controller.abort(reason);
      },
    }).catch((error: unknown) => error);

    expect(failure).toBe(reason);
    const dir = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT);
    expect((await stat(join(dir, 'model.safetensors.incomplete'))).size).toBeGreaterThan(0);
    await expectSameAsSource((await pull()).dir);
  });

  it('retries an API answer of HTTP 503', async () => {
    behaviour.failApi = 2;

    const pulled = await pull();

    expect(pulled.commitSha).toBe(COMMIT);
    expect(seen.filter((s) => s.path.startsWith('/api/') && s.status === 503)).toHaveLength(2);
  });

  it('names HF_ENDPOINT and `cohort model import` when the hub cannot be reached', async () => {
    const closed = createServer();
    const deadUrl = await listen(closed);
    await new Promise((r) => closed.close(r));

    const failure = await pull({ endpoint: deadUrl, retries: 1 }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(HubDownloadError);
    const message = (failure as Error).message;
    expect(message).toMatch(/could not reach the Hugging Face hub/);
    expect(message).toContain('HF_ENDPOINT');
    expect(message).toContain('cohort model import DIR');
    expect(message).toContain('2 attempts');
    expect((failure as Error).cause).toBeDefined();

    // With a complete earlier pull in the cache, the same call answers offline.
    const online = await pull();
    const offline = await pull({ endpoint: deadUrl, retries: 0 });
    expect(offline).toMatchObject({ offline: true, dir: online.dir, commitSha: COMMIT, files: online.files });
  });
});

describe('defaultCacheDir', () => {
  it('prefers COHORT_CACHE_DIR, then XDG_CACHE_HOME/cohort, then ~/.cache/cohort', () => {
    expect(defaultCacheDir({ COHORT_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(join('/x', 'cohort'));
    expect(defaultCacheDir({ COHORT_CACHE_DIR: '' })).toMatch(/\.cache[/\\]cohort$/);
  });
});
