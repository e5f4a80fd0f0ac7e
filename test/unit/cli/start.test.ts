import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createIngestProgress,
  DEFAULT_DATA_DIR,
  DEFAULT_HOST,
  DEFAULT_PORT,
  dataLayout,
  EXAMPLE_NOTES_DIR,
  FIXTURE_WARNING,
  IndexModelMismatchError,
  parsePort,
  prepareIndex,
  startSettings,
} from '../../../cli/src/start.ts';
import type { JobProgress } from '../../../functions/embed/src/job.ts';
import { type ResolvedModel, resolveModelBundle } from '../../../layers/encoder/src/resolve.ts';
import { COHORT_BIN } from '../../helpers/cli.ts';
import { tempDir } from '../../helpers/encoder.ts';

let root: string;
let cleanup: () => Promise<void>;
let fixture: ResolvedModel;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-start-'));
  fixture = await resolveModelBundle('fixture', { cacheDir: join(root, 'cache') });
});
afterAll(() => cleanup());

/** A running `cohort start`, with what it has written so far. */
interface Started {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

function startCohort(args: string[], env: Record<string, string | undefined>): Started {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, COHORT_LOG_LEVEL: 'warn' };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  const child = spawn(process.execPath, [COHORT_BIN, 'start', ...args], { env: childEnv });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Waits for the URL line on stdout; fails with stderr when the process ends first. */
async function urlOf(started: Started, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /running at (http:\/\/127\.0\.0\.1:\d+)\//.exec(started.stdout());
    if (m) return m[1]!;
    if (started.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`cohort start gave no URL (exit ${started.child.exitCode}):\n${started.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('cohort start settings', () => {
  it('defaults to ./.cohort-data, 127.0.0.1:8080 and the example notes', () => {
    expect(startSettings({}, {})).toEqual({
      data: DEFAULT_DATA_DIR,
      notes: [EXAMPLE_NOTES_DIR],
      port: DEFAULT_PORT,
      host: DEFAULT_HOST,
    });
    expect(DEFAULT_DATA_DIR).toBe('.cohort-data');
    expect(DEFAULT_PORT).toBe(8080);
    expect(DEFAULT_HOST).toBe('127.0.0.1');
  });

  it('takes COHORT_DATA, COHORT_PORT and COHORT_TOKEN, and options over them', () => {
    const env = { COHORT_DATA: '/srv/cohort', COHORT_PORT: '9000', COHORT_TOKEN: 's3cret' };
    expect(startSettings({}, env)).toMatchObject({ data: '/srv/cohort', port: 9000, token: 's3cret' });
    expect(
      startSettings({ data: 'd', port: 0, token: 't', notes: ['a.jsonl'], model: 'fixture' }, env),
    ).toMatchObject({ data: 'd', port: 0, token: 't', notes: ['a.jsonl'], model: 'fixture' });
    expect(() => startSettings({}, { COHORT_PORT: 'http' })).toThrow(/COHORT_PORT=http is not a port/);
  });

  it('accepts ports 0 to 65535 only', () => {
    expect(parsePort('0')).toBe(0);
    expect(parsePort('65535')).toBe(65535);
    for (const bad of ['-1', '65536', '80.5', 'eighty', ''])
      expect(() => parsePort(bad)).toThrow(/not a port/);
  });

  it('keeps index, audit, segment cache and scratch space inside the data directory', () => {
    expect(dataLayout('/d')).toEqual({
      index: '/d/index',
      audit: '/d/audit',
      cache: '/d/cache',
      work: '/d/work',
    });
  });
});

describe('ingest progress', () => {
  const progress = (done: number, extra: Partial<JobProgress> = {}): JobProgress => ({
    jobId: 'j',
    objectsTotal: 4,
    objectsDone: done,
    notes: done * 10,
    chunks: done * 60,
    committedChunks: 0,
    quarantined: 0,
    seconds: done,
    chunksPerSecond: 60,
    ...extra,
  });

  it('redraws one line with a bar on a terminal and ends it', () => {
    let text = '';
    const clock = { t: 0 };
    const p = createIngestProgress({ isTTY: true, write: (s: string) => (text += s) }, () => clock.t);
    for (let i = 0; i <= 4; i++) {
      p.update(progress(i, { etaSeconds: 4 - i }));
      clock.t += 200;
    }
    p.done();
    expect(text.split('\r').at(-1)).toBe('ingest  [####################]  4/4 files  40 notes  240 chunks\n');
    expect(text).toContain('ingest  [#####---------------]  1/4 files  10 notes  60 chunks  ETA 3s');
    expect(text.match(/\n/g)).toHaveLength(1);
  });

  it('prints plain lines at most every few seconds elsewhere, and the last counts at the end', () => {
    let text = '';
    const clock = { t: 0 };
    const p = createIngestProgress({ isTTY: false, write: (s: string) => (text += s) }, () => clock.t);
    for (let i = 0; i <= 4; i++) {
      p.update(progress(i, { quarantined: i === 4 ? 2 : 0 }));
      clock.t += 1000;
    }
    p.done();
    expect(text).toBe(
      'ingest  0/4 files  0 notes  0 chunks\ningest  4/4 files  40 notes  240 chunks  2 quarantined\n',
    );
    expect(text).not.toMatch(/\r/);
  });
});

describe('prepareIndex', () => {
  it('ingests the notes into an empty data directory, then leaves the index as it is', async () => {
    const settings = startSettings(
      { data: join(root, 'prepared'), notes: [join(EXAMPLE_NOTES_DIR, 'synthetic.jsonl')] },
      {},
    );
    let progress = '';
    const sink = { isTTY: false, write: (s: string) => (progress += s) };
    const first = await prepareIndex(settings, fixture, { progress: sink });
    expect(first.ingested).toBe(true);
    if (!first.ingested) return;
    expect(first.summary).toMatchObject({ objects: 1, notes: 10, quarantined: [] });
    expect(first.summary.chunks).toBeGreaterThanOrEqual(10);
    expect(progress).toMatch(/^ingest {2}1\/1 files {2}10 notes/m);

    expect(await prepareIndex(settings, fixture, { progress: sink })).toEqual({
      ingested: false,
      manifestVersion: 1,
    });
  });

  it('refuses an index built with another model, naming both models and the ways out', async () => {
    const settings = startSettings({ data: join(root, 'prepared'), notes: [EXAMPLE_NOTES_DIR] }, {});
    const other = {
      ...fixture,
      info: { ...fixture.info, fingerprint: 'sha256:another-model' },
      fixture: false,
    };
    const refusal = prepareIndex(settings, other);
    await expect(refusal).rejects.toBeInstanceOf(IndexModelMismatchError);
    await expect(refusal).rejects.toThrow(
      new RegExp(
        `built with model ${fixture.info.fingerprint}, but the model in use is sha256:another-model`,
      ),
    );
    await expect(refusal).rejects.toThrow(/--data or COHORT_DATA/);
  });
});

describe('cohort start', () => {
  it('ingests the example notes with the fixture model, says so plainly, serves the API and stops on SIGTERM', async () => {
    const data = join(root, 'start-data');
    const started = startCohort(['--port', '0'], {
      COHORT_MODEL: 'fixture',
      COHORT_DATA: data,
      COHORT_CACHE_DIR: join(root, 'cache'),
    });
    try {
      const url = await urlOf(started);
      const stderr = started.stderr();
      expect(stderr).toContain(FIXTURE_WARNING);
      expect(stderr).toContain(`data directory ${data}`);
      expect(stderr).toMatch(/ingested 44 notes \(\d+ chunks\) from /);

      const health = await fetch(`${url}/v1/health`);
      expect(health.status).toBe(200);
      const body = (await health.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ status: 'ok', manifestVersion: 1, segments: 1 });
      expect(body['chunks']).toBeGreaterThan(44);
      expect((body['model'] as { fingerprint: string }).fingerprint).toBe(fixture.info.fingerprint);
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<title>Cohort search</title>');
    } finally {
      started.child.kill('SIGTERM');
    }
    expect(await started.exited).toBe(0);
    expect(started.stderr()).toContain('SIGTERM, stopping');
  });

  it('serves the index already in the data directory, and says which port is in use when it is', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as { port: number };
    try {
      const started = startCohort(['--port', String(port)], {
        COHORT_MODEL: 'fixture',
        COHORT_DATA: join(root, 'start-data'),
        COHORT_CACHE_DIR: join(root, 'cache'),
      });
      expect(await started.exited).toBe(1);
      expect(started.stderr()).toContain('serving the index already in the data directory (version 1)');
      expect(started.stderr()).toContain(`cohort: port ${port} on 127.0.0.1 is in use`);
      expect(started.stdout()).toBe('');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('stops with the options named when there is no model and no hub', async () => {
    const started = startCohort(['--port', '0'], {
      COHORT_MODEL: undefined,
      COHORT_DATA: join(root, 'no-model-data'),
      COHORT_CACHE_DIR: join(root, 'empty-cache'),
      HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
    });
    expect(await started.exited).toBe(1);
    const stderr = started.stderr();
    expect(stderr).toContain('could not be downloaded from the Hugging Face hub');
    expect(stderr).toContain('set COHORT_MODEL (or --model) to a bundle directory');
    expect(stderr).toContain('COHORT_MODEL=fixture npm start');
    expect(started.stdout()).toBe('');
  });
});
