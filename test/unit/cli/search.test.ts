import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COHORT_BIN, runCohort } from '../../helpers/cli.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { buildTestIndex, TEST_QUERY, type TestIndex } from '../../helpers/query.ts';

let root: string;
let cleanup: () => Promise<void>;
let index: TestIndex;
const children: ChildProcess[] = [];

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-cli-search-'));
  index = await buildTestIndex(root);
});

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await cleanup?.();
});

const env = () => ({ COHORT_CACHE_DIR: join(root, 'cache') });

describe('cohort search', () => {
  it("prints the API's JSON answer with --json", async () => {
    const out = await runCohort(
      ['search', TEST_QUERY, '--data', index.indexDir, '--model', index.bundle, '--k', '3', '--json'],
      env(),
    );
    expect(out.code, out.stderr).toBe(0);
    const answer = JSON.parse(out.stdout);
    expect(answer.cohort.map((m: { patientId: string }) => m.patientId)).toEqual(['p1', 'p3', 'p5']);
    expect(answer.model.fingerprint).toBe(index.fingerprint);
    expect(out.stderr).not.toContain('atrial');
  });

  it('prints a table: rank, patient, score, section and the highlighted evidence', async () => {
    const out = await runCohort(
      ['search', TEST_QUERY, '--data', index.indexDir, '--model', index.bundle, '--k', '2'],
      env(),
    );
    expect(out.code, out.stderr).toBe(0);
    const lines = out.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^rank\s+patient\s+score\s+section\s+evidence$/);
    expect(lines[2]).toMatch(
      /^1\s+p1\s+0\.9500\s+hospital_course\s+New-onset atrial fibrillation after CABG\.$/,
    );
    expect(lines[3]).toMatch(/^2\s+p3\s+0\.9000\s+impression\s+/);
    expect(lines.at(-1)).toMatch(/^2 of 2 patients · manifest 1 · 72 chunks · [\d.]+ ms$/);
  });

  it('explains a bad query and a missing index', async () => {
    const blank = await runCohort(['search', '  ', '--data', index.indexDir, '--model', index.bundle], env());
    expect(blank.code).toBe(1);
    expect(blank.stderr).toMatch(/invalid search: query is blank/);
    const missing = await runCohort(
      ['search', 'x', '--data', join(root, 'nowhere'), '--model', index.bundle],
      env(),
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/index/);
  });
});

describe('cohort serve', () => {
  it('refuses a negative number of model workers, a model batch of 0, and threads for the auto pool', async () => {
    const base = ['serve', '--data', index.indexDir, '--model', index.bundle, '--port', '0'];
    const workers = await runCohort([...base, '--model-workers', '-1'], env());
    expect(workers.code).not.toBe(0);
    expect(workers.stderr).toMatch(/-1 is neither auto nor an integer ≥ 0/);
    const batch = await runCohort([...base, '--model-batch', '0'], env());
    expect(batch.code).not.toBe(0);
    expect(batch.stderr).toMatch(/0 is not a positive integer/);
    const threads = await runCohort([...base, '--model-threads', '2'], env());
    expect(threads.code).not.toBe(0);
    expect(threads.stderr).toMatch(/--model-threads needs a number of --model-workers/);
  });

  it('serves the API on loopback with a token and prints its address', async () => {
    const child = spawn(
      process.execPath,
      [
        COHORT_BIN,
        'serve',
        '--data',
        index.indexDir,
        '--model',
        index.bundle,
        '--port',
        '0',
        '--token',
        'secret-token',
      ],
      { env: { ...process.env, COHORT_LOG_LEVEL: 'warn', ...env() }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    const first = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    const { url, token } = JSON.parse(first);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(token).toBe(true);
    expect((await fetch(`${url}/v1/health`)).status).toBe(401);
    const health = await fetch(`${url}/v1/health`, { headers: { authorization: 'Bearer secret-token' } });
    expect(await health.json()).toMatchObject({ status: 'ok', manifestVersion: 1, chunks: 72 });
    const search = await fetch(`${url}/v1/search`, {
      method: 'POST',
      headers: { authorization: 'Bearer secret-token', 'content-type': 'application/json' },
      body: JSON.stringify({ query: TEST_QUERY, k: 1 }),
    });
    expect((await search.json()).cohort[0].patientId).toBe('p1');
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
