import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRandomBertCheckpoint } from '../../../layers/encoder/src/fixture.ts';
import { tempDir } from '../../helpers/encoder.ts';
import {
  FAKE_HUB_FILES,
  type FakeHub,
  PYTORCH_REPO_FILES,
  startFakeHub,
  unreachableUrl,
} from '../../helpers/hub-server.ts';

const BIN = new URL('../../../cli/bin/cohort.mjs', import.meta.url).pathname;
const REPO = 'emilyalsentzer/Bio_Discharge_Summary_BERT';
const COMMIT = 'fedcba9876543210fedcba9876543210fedcba98';
// Each pull imports the tiny model in a fresh Node process with tsx; leave room for a slow machine.
const TIMEOUT_MS = 120_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cohort model pull` as a user would, with the hub and cache set through the environment only.
 * Resolves with the exit code and both streams instead of throwing on a non-zero exit.
 */
function cohortPull(env: { HF_ENDPOINT: string; COHORT_CACHE_DIR: string }, ...args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [BIN, 'model', 'pull', REPO, ...args], {
    // HF_TOKEN from the developer's shell must not reach the fake hub; empty counts as unset.
    env: { ...process.env, ...env, HF_TOKEN: '', COHORT_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

let root: string;
let cleanup: () => Promise<void>;
let fake: FakeHub;
let cacheDir: string;
let first: Run;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-pull-'));
  await writeRandomBertCheckpoint(join(root, 'source'));
  fake = await startFakeHub({ repo: REPO, commit: COMMIT, sourceDir: join(root, 'source') });
  cacheDir = join(root, 'cache');
  first = await cohortPull(
    { HF_ENDPOINT: fake.hubUrl, COHORT_CACHE_DIR: cacheDir },
    '--out',
    join(root, 'bundle'),
    '--variants',
    'int8',
  );
}, TIMEOUT_MS);

afterAll(async () => {
  await fake?.close();
  await cleanup?.();
});

describe('cohort model pull', () => {
  it('downloads, imports and prints one JSON line on stdout', () => {
    expect(first.code, first.stderr).toBe(0);
    const lines = first.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      bundle: join(root, 'bundle'),
      fingerprint: expect.any(String),
      dims: 32,
      variants: ['int8'],
    });
  });

  it('records the repo, the revision and the commit in model.json', async () => {
    const info = JSON.parse(await readFile(join(root, 'bundle', 'model.json'), 'utf8'));
    expect(info.source).toMatchObject({ repo: REPO, revision: 'main', commit: COMMIT });
  });

  it('shows download progress per file on stderr as plain lines, without carriage returns', () => {
    for (const name of FAKE_HUB_FILES) {
      expect(first.stderr).toMatch(new RegExp(`^${name.replaceAll('.', '\\.')}  .*100%`, 'm'));
    }
    expect(first.stderr).not.toContain('\r');
    expect(first.stderr).not.toContain('\x1b[');
    // Progress is for people; nothing of it may leak into the machine-readable stdout.
    expect(first.stdout).not.toContain('model.safetensors');
  });

  it(
    'serves a second pull into another bundle from the cache, fetching no file',
    async () => {
      fake.reset();

      const second = await cohortPull(
        { HF_ENDPOINT: fake.hubUrl, COHORT_CACHE_DIR: cacheDir },
        '--out',
        join(root, 'bundle-2'),
        '--variants',
        'int8',
      );

      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ bundle: join(root, 'bundle-2'), variants: ['int8'] });
      // The revision is still resolved online, but no file content is downloaded again.
      expect(fake.seen.some((s) => s.path.startsWith('/api/'))).toBe(true);
      expect(fake.seen.filter((s) => s.path.includes('/resolve/'))).toEqual([]);
      expect(fake.fileRequests()).toEqual([]);
    },
    TIMEOUT_MS,
  );

  it(
    'leaves a bundle of the same commit and settings as it is, and replaces it only with --force',
    async () => {
      const out = join(root, 'bundle-2');
      const env = { HF_ENDPOINT: fake.hubUrl, COHORT_CACHE_DIR: cacheDir };
      const before = await readFile(join(out, 'model.json'), 'utf8');
      const again = await cohortPull(env, '--out', out, '--variants', 'int8');
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ bundle: out, variants: ['int8'] });
      expect(await readFile(join(out, 'model.json'), 'utf8')).toBe(before);

      const other = await cohortPull(env, '--out', out, '--variants', 'fp32');
      expect(other.code).not.toBe(0);
      expect(other.stderr).toMatch(/holds another bundle .* --force/);
      expect(other.stdout).toBe('');

      const forced = await cohortPull(env, '--out', out, '--variants', 'fp32', '--force');
      expect(forced.code, forced.stderr).toBe(0);
      expect(JSON.parse(forced.stdout)).toMatchObject({ variants: ['fp32'] });
    },
    TIMEOUT_MS,
  );

  it(
    'refuses a destination of other files before downloading anything',
    async () => {
      fake.reset();
      const out = join(root, 'not-a-bundle');
      await mkdir(out, { recursive: true });
      await writeFile(join(out, 'notes.txt'), 'keep me');
      const result = await cohortPull(
        { HF_ENDPOINT: fake.hubUrl, COHORT_CACHE_DIR: cacheDir },
        '--out',
        out,
        '--force',
      );
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/holds files but no model bundle/);
      expect(fake.seen).toEqual([]);
      expect(await readFile(join(out, 'notes.txt'), 'utf8')).toBe('keep me');
    },
    TIMEOUT_MS,
  );

  it(
    'fails with a message naming HF_ENDPOINT when the hub cannot be reached, and prints nothing on stdout',
    async () => {
      const dead = await cohortPull(
        { HF_ENDPOINT: await unreachableUrl(), COHORT_CACHE_DIR: join(root, 'empty-cache') },
        '--out',
        join(root, 'bundle-unreachable'),
        '--variants',
        'int8',
      );

      expect(dead.code).not.toBe(0);
      expect(dead.stdout).toBe('');
      expect(dead.stderr).toMatch(/^cohort: could not reach the Hugging Face hub/m);
      expect(dead.stderr).toContain('HF_ENDPOINT');
    },
    TIMEOUT_MS,
  );
});

describe('cohort model pull from a repo with pytorch_model.bin only, as ClinicalBERT has', () => {
  let torchHub: FakeHub;
  let torchRoot: string;
  let torchCleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ dir: torchRoot, cleanup: torchCleanup } = await tempDir('cohort-pull-torch-'));
    torchHub = await startFakeHub({ repo: REPO, commit: COMMIT, files: PYTORCH_REPO_FILES });
  });

  afterAll(async () => {
    await torchHub?.close();
    await torchCleanup?.();
  });

  it(
    'downloads pytorch_model.bin and imports it as torch-legacy weights',
    async () => {
      const bundle = join(torchRoot, 'b');

      const run = await cohortPull(
        { HF_ENDPOINT: torchHub.hubUrl, COHORT_CACHE_DIR: join(torchRoot, 'cache') },
        '--out',
        bundle,
        '--variants',
        'int8',
      );

      expect(run.code, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ bundle, dims: 32, variants: ['int8'] });
      const info = JSON.parse(await readFile(join(bundle, 'model.json'), 'utf8'));
      expect(info.source).toMatchObject({
        repo: REPO,
        revision: 'main',
        commit: COMMIT,
        weightsFile: 'pytorch_model.bin',
        weightsFormat: 'torch-legacy',
      });
      expect(run.stderr).toMatch(/^pytorch_model\.bin {2}.*100%/m);
      // The weights came through the LFS redirect, from the CDN.
      expect(torchHub.seen.some((s) => s.server === 'cdn' && s.status === 200)).toBe(true);
    },
    TIMEOUT_MS,
  );
});
