import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
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
import {
  FAKE_HUB_LFS_FILE,
  type FakeHub,
  FAKE_HUB_FILES as FILES,
  gitBlobSha1,
  PYTORCH_REPO_FILES,
  sha256,
  startFakeHub,
  unreachableUrl,
} from '../../helpers/hub-server.ts';

const REPO = 'emilyalsentzer/Bio_Discharge_Summary_BERT';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const TOKEN = 'hf_test_token_123';

let source: string;
let fake: FakeHub;
let cacheDir: string;

function pull(options: Partial<PullOptions> = {}) {
  return pullCheckpoint({
    repoId: REPO,
    endpoint: fake.hubUrl,
    cacheDir,
    token: null,
    retryDelayMs: 1,
    ...options,
  });
}

beforeAll(async () => {
  source = await mkdtemp(join(tmpdir(), 'cohort-hub-src-'));
  await writeRandomBertCheckpoint(source);
  fake = await startFakeHub({ repo: REPO, commit: COMMIT, sourceDir: source, token: TOKEN });
});

afterAll(async () => {
  await fake.close();
  await rm(source, { recursive: true, force: true });
});

beforeEach(async () => {
  fake.reset();
  cacheDir = await mkdtemp(join(tmpdir(), 'cohort-hub-cache-'));
});

afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

async function expectSameAsSource(dir: string): Promise<void> {
  for (const name of FILES) {
    expect((await readFile(join(dir, name))).equals(fake.content.get(name)!), name).toBe(true);
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
      FILES.map((name) => ({
        name,
        bytes: fake.content.get(name)!.length,
        sha256: sha256(fake.content.get(name)!),
      })),
    );
    expect((await readdir(pulled.dir)).sort()).toEqual([...FILES].sort());
    const ref = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', 'refs', 'main');
    expect((await readFile(ref, 'utf8')).trim()).toBe(COMMIT);
    // The weights came from the redirect target, not from the hub itself.
    expect(fake.seen.some((s) => s.server === 'cdn' && s.status === 200)).toBe(true);
  });

  it('resumes with a Range request after the connection drops midway, within the same call', async () => {
    fake.behaviour.cutAfter = 1_000_000;

    const pulled = await pull();

    await expectSameAsSource(pulled.dir);
    const ranged = fake.seen.filter((s) => s.server === 'cdn' && s.range);
    expect(ranged.length).toBeGreaterThan(0);
    const start = Number(/^bytes=(\d+)-$/.exec(ranged[0]!.range!)![1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(1_000_000);
    expect(ranged[0]!.status).toBe(206);
  });

  it('keeps the partial file when retries run out, and the next call resumes it', async () => {
    fake.behaviour.cutAfter = 1_000_000;

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
    expect(
      fake.seen.some((s) => s.server === 'cdn' && s.range === `bytes=${partial}-` && s.status === 206),
    ).toBe(true);
    expect(events.filter((e) => e.file === 'model.safetensors')[0]).toMatchObject({
      receivedBytes: partial,
      resumedFrom: partial,
    });
  });

  it('ends correct when the server ignores Range and sends the whole file again', async () => {
    fake.behaviour.cutAfter = 1_000_000;
    fake.behaviour.ignoreRange = true;

    const pulled = await pull();

    await expectSameAsSource(pulled.dir);
    expect(fake.seen.some((s) => s.server === 'cdn' && s.range && s.status === 200)).toBe(true);
  });

  it.each(['model.safetensors', 'vocab.txt'])(
    'rejects a corrupted byte in %s and leaves no file',
    async (name) => {
      fake.behaviour.corrupt = name;

      const failure = await pull().catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(IntegrityError);
      const message = (failure as Error).message;
      expect(message).toContain(name);
      const bytes = fake.content.get(name)!;
      expect(message).toContain(name === FAKE_HUB_LFS_FILE ? sha256(bytes) : gitBlobSha1(bytes));
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
    fake.behaviour.requireToken = true;

    const failure = await pull().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/HF_TOKEN/);
    expect((failure as Error).message).not.toContain(TOKEN);

    const pulled = await pull({ token: TOKEN });
    await expectSameAsSource(pulled.dir);
  });

  it('says where a refused token came from, without showing it', async () => {
    fake.behaviour.requireToken = true;
    const wrong = 'hf_wrong_token_456';

    const given = (await pull({ token: wrong }).catch((error: unknown) => error)) as Error;
    expect(given).toBeInstanceOf(HubDownloadError);
    expect(given.message).toMatch(/HTTP 401.*a token was sent and refused/);
    expect(given.message).not.toMatch(/HF_TOKEN was sent/);
    expect(given.message).not.toContain(wrong);

    const saved = process.env['HF_TOKEN'];
    process.env['HF_TOKEN'] = wrong;
    try {
      const fromEnv = (await pull({ token: undefined }).catch((error: unknown) => error)) as Error;
      expect(fromEnv.message).toMatch(/the token in HF_TOKEN was sent and refused; set HF_TOKEN/);
      expect(fromEnv.message).not.toContain(wrong);
    } finally {
      if (saved === undefined) delete process.env['HF_TOKEN'];
      else process.env['HF_TOKEN'] = saved;
    }
  });

  it('lists what the repo has when the weights are missing', async () => {
    fake.behaviour.weightlessRepo = 'acme/tokenizer-only';

    const failure = await pull({ repoId: 'acme/tokenizer-only' }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(HubDownloadError);
    expect((failure as Error).message).toMatch(/missing model\.safetensors or pytorch_model\.bin/);
    expect((failure as Error).message).toMatch(/\.gitattributes, config\.json, vocab\.txt/);
  });

  it('serves a second pull from the cache without fetching any file', async () => {
    const first = await pull();
    fake.seen.length = 0;

    const events: HubProgressEvent[] = [];
    const second = await pull({ onProgress: (e) => events.push(e) });

    expect(fake.fileRequests()).toEqual([]);
    expect(second.files).toEqual(first.files);
    expect(second.dir).toBe(first.dir);
    expect(events.map((e) => e.receivedBytes)).toEqual(events.map((e) => e.totalBytes));
  });

  it('sends the token to the hub but not to the redirect target on another host', async () => {
    await pull({ token: TOKEN });

    const hubRequests = fake.seen.filter((s) => s.server === 'hub');
    const cdnRequests = fake.seen.filter((s) => s.server === 'cdn');
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
      expect(mine.at(-1)!.receivedBytes).toBe(fake.content.get(name)!.length);
      expect(mine.every((e) => e.totalBytes === fake.content.get(name)!.length && e.resumedFrom === 0)).toBe(
        true,
      );
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

  it('cancels the response body when the partial file cannot be read or opened', async () => {
    // A directory where the partial weights should be: statted fine, then unreadable and unopenable.
    const dir = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT);
    await mkdir(join(dir, `${FAKE_HUB_LFS_FILE}.incomplete`), { recursive: true });
    const responses: Response[] = [];
    const recording: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      responses.push(res);
      return res;
    };

    const failure = await pull({ fetch: recording }).catch((error: unknown) => error);

    expect((failure as NodeJS.ErrnoException).code).toBe('EISDIR');
    const weights = responses.at(-1)!;
    expect(weights.url).toContain(fake.cdnUrl);
    expect([200, 206]).toContain(weights.status);
    // A cancelled body is closed: nothing more comes out of it.
    expect(weights.body!.locked).toBe(false);
    expect(await weights.body!.getReader().read()).toEqual({ done: true, value: undefined });
  });

  it('retries an API answer of HTTP 503', async () => {
    fake.behaviour.failApi = 2;

    const pulled = await pull();

    expect(pulled.commitSha).toBe(COMMIT);
    expect(fake.seen.filter((s) => s.path.startsWith('/api/') && s.status === 503)).toHaveLength(2);
  });

  it('names HF_ENDPOINT and `cohort model import` when the hub cannot be reached', async () => {
    const deadUrl = await unreachableUrl();

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

describe('pullCheckpoint from a repo with pytorch_model.bin only, as ClinicalBERT has', () => {
  let torchHub: FakeHub;

  beforeAll(async () => {
    torchHub = await startFakeHub({ repo: REPO, commit: COMMIT, files: PYTORCH_REPO_FILES });
  });

  afterAll(async () => {
    await torchHub?.close();
  });

  beforeEach(() => {
    torchHub.reset();
  });

  it('downloads pytorch_model.bin through the CDN, byte-identical to the fixture and sha256-checked', async () => {
    const pulled = await pull({ endpoint: torchHub.hubUrl });

    const fixture = await readFile(PYTORCH_REPO_FILES['pytorch_model.bin']!);
    expect(torchHub.lfsFile).toBe('pytorch_model.bin');
    expect(pulled.files.map((f) => f.name)).toEqual(['config.json', 'vocab.txt', 'pytorch_model.bin']);
    expect((await readFile(join(pulled.dir, 'pytorch_model.bin'))).equals(fixture)).toBe(true);
    expect(pulled.files[2]).toEqual({
      name: 'pytorch_model.bin',
      bytes: fixture.length,
      sha256: sha256(fixture),
    });
    for (const name of ['config.json', 'vocab.txt']) {
      const expected = await readFile(PYTORCH_REPO_FILES[name]!);
      expect((await readFile(join(pulled.dir, name))).equals(expected), name).toBe(true);
    }
    expect((await readdir(pulled.dir)).sort()).toEqual(['config.json', 'pytorch_model.bin', 'vocab.txt']);
    // Served as an LFS file: the hub redirects, the CDN sends the bytes.
    expect(torchHub.seen).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          server: 'hub',
          path: expect.stringMatching(/\/pytorch_model\.bin$/),
          status: 302,
        }),
        expect.objectContaining({ server: 'cdn', path: `/lfs/${sha256(fixture)}`, status: 200 }),
      ]),
    );
  });

  it('rejects a corrupted byte in pytorch_model.bin against the LFS sha256 and leaves no file', async () => {
    torchHub.behaviour.corrupt = 'pytorch_model.bin';

    const failure = await pull({ endpoint: torchHub.hubUrl }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(IntegrityError);
    const fixture = await readFile(PYTORCH_REPO_FILES['pytorch_model.bin']!);
    expect((failure as Error).message).toContain('pytorch_model.bin');
    expect((failure as Error).message).toContain(`expected ${sha256(fixture)}`);
    const dir = join(cacheDir, 'hub', 'emilyalsentzer--Bio_Discharge_Summary_BERT', COMMIT);
    expect(existsSync(join(dir, 'pytorch_model.bin'))).toBe(false);
    expect(existsSync(join(dir, 'pytorch_model.bin.incomplete'))).toBe(false);
  });
});

describe('defaultCacheDir', () => {
  it('prefers COHORT_CACHE_DIR, then XDG_CACHE_HOME/cohort, then ~/.cache/cohort', () => {
    expect(defaultCacheDir({ COHORT_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(join('/x', 'cohort'));
    expect(defaultCacheDir({ COHORT_CACHE_DIR: '' })).toMatch(/\.cache[/\\]cohort$/);
  });
});
