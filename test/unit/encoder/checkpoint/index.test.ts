import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpointWeights } from '../../../../layers/encoder/src/checkpoint/index.ts';
import { writeRandomBertCheckpoint } from '../../../../layers/encoder/src/fixture.ts';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/tiny-bert-torch/', import.meta.url));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'checkpoint-weights-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256Of = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

describe('readCheckpointWeights', () => {
  it('returns the SHA-256 of the weights file it read, in every format', async () => {
    const safetensors = join(tmp, 'safetensors');
    await writeRandomBertCheckpoint(safetensors);
    for (const dir of [safetensors, join(FIXTURE, 'torch-zip'), join(FIXTURE, 'torch-legacy')]) {
      const weights = await readCheckpointWeights(dir);
      expect(weights.sha256, dir).toMatch(/^[0-9a-f]{64}$/);
      expect(weights.sha256, dir).toBe(await sha256Of(weights.file));
    }
  });

  it('returns only the tensors a key filter keeps, in every format', async () => {
    const safetensors = join(tmp, 'filtered');
    await writeRandomBertCheckpoint(safetensors);
    const notPooler = (key: string) => !key.includes('pooler.');
    for (const dir of [safetensors, join(FIXTURE, 'torch-zip'), join(FIXTURE, 'torch-legacy')]) {
      const all = await readCheckpointWeights(dir);
      const kept = await readCheckpointWeights(dir, { keep: notPooler });
      expect(
        [...all.tensors.keys()].some((k) => !notPooler(k)),
        dir,
      ).toBe(true);
      expect([...kept.tensors.keys()], dir).toEqual([...all.tensors.keys()].filter(notPooler));
      expect(kept.sha256).toBe(all.sha256);
      for (const [key, t] of kept.tensors) {
        expect(Buffer.from(t.bytes).equals(Buffer.from(all.tensors.get(key)!.bytes)), key).toBe(true);
      }
    }
  });
});
