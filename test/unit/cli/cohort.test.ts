import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runCohort } from '../../helpers/cli.ts';
import { tempDir } from '../../helpers/encoder.ts';

const cohort = (...args: string[]) => runCohort(args);

// biome-ignore lint/suspicious/noExplicitAny: test rows are free-form JSON
const lines = (s: string): any[] => jsonLines(s);

let root: string;
let cleanup: () => Promise<void>;
let bundle: string;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir());
  const fixture = await cohort('model', 'fixture', '--out', join(root, 'ckpt'));
  expect(fixture.code).toBe(0);
  bundle = join(root, 'bundle');
  const imported = await cohort(
    'model',
    'import',
    join(root, 'ckpt'),
    '--out',
    bundle,
    '--variants',
    'fp32,int8',
  );
  expect(imported.code).toBe(0);
  expect(lines(imported.stdout)[0]).toMatchObject({ dims: 32, variants: ['fp32', 'int8'] });
}, 120_000);
afterAll(() => cleanup());

describe('cohort CLI', () => {
  it('writes the fixture checkpoint in Hugging Face layout', async () => {
    const config = JSON.parse(await readFile(join(root, 'ckpt', 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'bert', hidden_size: 32, vocab_size: 28996 });
  });

  it('prints model.json with model info, and verifies it', async () => {
    const info = await cohort('model', 'info', bundle, '--verify');
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({
      dims: 32,
      pooling: 'mean',
      lowercase: false,
      format: 'cohort-model-bundle/1',
    });
  });

  it('prints one JSON line per text from tokenize', async () => {
    const out = await cohort('tokenize', '--model', bundle, 'Hello world!', 'Denies chest pain.');
    expect(out.code).toBe(0);
    const [hello, denies] = lines(out.stdout);
    expect(hello).toEqual({
      ids: [101, 8667, 1362, 106, 102],
      tokens: ['[CLS]', 'Hello', 'world', '!', '[SEP]'],
      offsets: [
        [0, 0],
        [0, 5],
        [6, 11],
        [11, 12],
        [0, 0],
      ],
    });
    expect(denies.tokens).toContain('chest');
  });

  it('prints one unit-length embedding per text from embed', async () => {
    const out = await cohort(
      'embed',
      '--model',
      bundle,
      '--variant',
      'fp32',
      'atrial fibrillation',
      'pneumonia',
    );
    expect(out.code).toBe(0);
    const rows = lines(out.stdout);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.dims).toBe(32);
      expect(Math.hypot(...row.embedding)).toBeCloseTo(1, 5);
    }
  });

  it('explains errors on stderr with a non-zero exit and nothing on stdout', async () => {
    const missing = await cohort('model', 'info', join(root, 'nope'));
    expect(missing.code).not.toBe(0);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^cohort: .*model bundle/m);

    const cuda = await cohort('embed', '--model', bundle, '--provider', 'cuda', 'x');
    expect(cuda.code).toBe(1);
    expect(cuda.stderr).toMatch(/cuda execution provider is not installed/);

    const variant = await cohort('embed', '--model', bundle, '--variant', 'fp16', 'x');
    expect(variant.code).toBe(1);
    expect(variant.stderr).toMatch(/no fp16 variant/);

    const badVariant = await cohort(
      'model',
      'import',
      join(root, 'ckpt'),
      '--out',
      join(root, 'x'),
      '--variants',
      'fp64',
    );
    expect(badVariant.code).not.toBe(0);
    expect(badVariant.stderr).toMatch(/unknown variant fp64/);

    const long = await cohort('embed', '--model', bundle, 'word '.repeat(200));
    expect(long.code).toBe(1);
    expect(long.stderr).toMatch(/over the model's maximum of 128/);
    expect(long.stderr).not.toContain('word word');
  });

  it('says on stderr which execution provider and variant auto chose, keeping stdout to JSON', async () => {
    {
      const out = await runCohort(['embed', '--model', bundle, 'atrial fibrillation'], {
        COHORT_LOG_LEVEL: 'info',
      });
      expect(out.code).toBe(0);
      expect(out.stderr).toMatch(/execution provider chosen \{"provider":"(cpu|cuda|webgpu)"/);
      expect(out.stderr).toMatch(/encoder loaded .*"variant":"(int8|fp16|fp32)"/);
      expect(out.stderr).not.toContain('atrial');
      expect(lines(out.stdout)).toHaveLength(1);
    }
  });

  it('truncates when asked and says so on stderr', async () => {
    const out = await cohort('embed', '--model', bundle, '--truncate', 'word '.repeat(200));
    expect(out.code).toBe(0);
    expect(lines(out.stdout)).toHaveLength(1);
    expect(out.stderr).toMatch(/truncated/);
  });
});
