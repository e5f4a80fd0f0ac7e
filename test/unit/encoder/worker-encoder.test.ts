import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { EncoderWorkerError, WorkerEncoder } from '../../../layers/encoder/src/worker-encoder.ts';
import { CLINICAL_SENTENCES, tempDir, threadNiceness, tinyBundle } from '../../helpers/encoder.ts';

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

  it('tokenizes and embeds texts on the worker as the encoder does in process, truncation reported', async () => {
    const local = await Encoder.load(bundle, { provider: 'cpu', threads: 1 });
    const worker = await WorkerEncoder.start(bundle, { provider: 'cpu', threads: 1 });
    try {
      const long = 'The patient was seen in clinic today. '.repeat(40);
      const texts = [...CLINICAL_SENTENCES.slice(0, 3), long];
      await expect(worker.embed(texts)).rejects.toThrow(/SequenceTooLongError/);
      const ours = await worker.embed(texts, { onOverflow: 'truncate' });
      const expected = await local.embed(texts, { onOverflow: 'truncate' });
      expect(ours.truncated).toEqual([3]);
      expect(ours.embeddings.map((e) => Array.from(e))).toEqual(
        expected.embeddings.map((e) => Array.from(e)),
      );
    } finally {
      await worker.close();
      await local.close();
    }
  });

  it.runIf(process.platform === 'linux')(
    "lowers its own threads' priority by the niceness asked for, not the caller's",
    async () => {
      const before = threadNiceness();
      const base = before.get(process.pid)!;
      const worker = await WorkerEncoder.start(bundle, { provider: 'cpu', threads: 2, niceness: 7 });
      try {
        const after = threadNiceness();
        const started = [...after].filter(([tid]) => !before.has(tid));
        // The worker's own thread and ONNX Runtime's second intra-op thread, at least.
        expect(started.filter(([, nice]) => nice === Math.min(19, base + 7)).length).toBeGreaterThanOrEqual(
          2,
        );
        expect(after.get(process.pid)).toBe(base);
        for (const [tid, nice] of before) if (after.has(tid)) expect(after.get(tid)).toBe(nice);
        expect((await worker.embed(['chest pain'])).embeddings).toHaveLength(1);
      } finally {
        await worker.close();
      }
    },
  );

  it('refuses a niceness that is no nice value to add', async () => {
    for (const niceness of [-1, 20, 1.5]) {
      await expect(WorkerEncoder.start(bundle, { provider: 'cpu', niceness })).rejects.toThrow(RangeError);
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
