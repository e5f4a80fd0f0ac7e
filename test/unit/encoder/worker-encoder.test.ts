import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { EncoderWorkerError, WorkerEncoder } from '../../../layers/encoder/src/worker-encoder.ts';
import { CLINICAL_SENTENCES, tempDir, tinyBundle } from '../../helpers/encoder.ts';

let root: { dir: string; cleanup: () => Promise<void> };
let bundle: string;

beforeAll(async () => {
  root = await tempDir('embed-worker-');
  bundle = await tinyBundle(root.dir);
});
afterAll(async () => root.cleanup());

describe('WorkerEncoder', () => {
  it('embeds token ids on a worker thread exactly as the encoder does in process', async () => {
    const local = await Encoder.load(bundle, { provider: 'cpu', threads: 1 });
    const worker = await WorkerEncoder.start(bundle, { provider: 'cpu', threads: 1 });
    try {
      expect(worker.provider).toBe('cpu');
      expect(worker.variant).toBe(local.variant);
      expect(worker.info.fingerprint).toBe(local.info.fingerprint);
      expect([worker.threads, local.threads]).toEqual([1, 1]);
      const ids = (await worker.tokenize(CLINICAL_SENTENCES)).map((t) => t.ids);
      const [a, b] = await Promise.all([worker.embedIds(ids), worker.embedIds(ids.slice(0, 3))]);
      const expected = (await local.embedIds(ids)).embeddings;
      expect(a.embeddings.map((e) => Array.from(e))).toEqual(expected.map((e) => Array.from(e)));
      expect(b.embeddings).toHaveLength(3);
      expect(a.embeddings[0]).toHaveLength(worker.dims);
    } finally {
      await worker.close();
      await local.close();
    }
  });

  it('reports why the encoder could not start, with the encoder error name', async () => {
    // The repository installs onnxruntime-node without its CUDA provider (.npmrc), so asking for it fails.
    const error = await WorkerEncoder.start(bundle, { provider: 'cuda' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EncoderWorkerError);
    expect((error as Error).message).toContain('ProviderUnavailableError');
  });

  it('refuses requests once its worker has exited, and closes only once', async () => {
    const worker = await WorkerEncoder.start(bundle, { provider: 'cpu', threads: 1 });
    expect(worker.exited).toBe(false);
    await worker.close();
    expect(worker.exited).toBe(true);
    await expect(worker.embedIds([[2, 3]])).rejects.toBeInstanceOf(EncoderWorkerError);
    await worker.close();
  });
});
