import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BundleError, ProviderUnavailableError } from '../../../layers/encoder/src/errors.ts';
import { buildBertOnnx } from '../../../layers/encoder/src/onnx/bert.ts';
import {
  createSession,
  graphOptimizationLevel,
  providerInstalled,
  type ResolvedProvider,
} from '../../../layers/encoder/src/session.ts';
import { tempDir, tinyWeights } from '../../helpers/encoder.ts';

let dir: string;
let modelPath: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  modelPath = join(dir, 'model.onnx');
  await writeFile(modelPath, buildBertOnnx(tinyWeights()));
});
afterAll(() => cleanup());

describe('createSession', () => {
  it('reports the CPU provider as installed', () => {
    expect(providerInstalled('cpu')).toBe(true);
  });

  it('starts a provider asked for by name when installed, and otherwise fails without falling back', async () => {
    for (const provider of ['cuda', 'webgpu'] as const) {
      const result = await createSession(modelPath, { provider }).catch((e: unknown) => e);
      if (providerInstalled(provider)) {
        expect(result).toMatchObject({ provider });
        await (result as { session: { release(): Promise<void> } }).session.release();
      } else {
        expect(result).toBeInstanceOf(ProviderUnavailableError);
      }
    }
  });

  it('resolves auto to the best provider that starts and asks the model chooser for that provider', async () => {
    const asked: ResolvedProvider[] = [];
    const logged: Record<string, unknown>[] = [];
    const { session, provider } = await createSession(
      (p) => {
        asked.push(p);
        return modelPath;
      },
      {
        logger: { debug: () => {}, warn: () => {}, info: (_m, ...f) => logged.push(Object.assign({}, ...f)) },
      },
    );
    // On this machine neither GPU provider is installed; elsewhere auto takes the first that starts.
    const expected: ResolvedProvider = (['cuda', 'webgpu'] as const).find(providerInstalled) ?? 'cpu';
    expect(provider).toBe(expected);
    expect(asked.at(-1)).toBe(expected);
    expect(logged[0]).toMatchObject({ provider: expected });
    if (expected === 'cpu')
      expect(logged[0]!['skipped']).toEqual(['cuda: not installed', 'webgpu: not installed']);
    await session.release();
  });

  it('runs the same in every spinning mode (threads that spin always, during runs only, or never)', async () => {
    const ids = BigInt64Array.from([2n, 10n, 11n, 12n, 3n]);
    const feeds = {
      input_ids: new ort.Tensor('int64', ids, [1, 5]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(5).fill(1n), [1, 5]),
    };
    const outputs: Float32Array[] = [];
    for (const spinning of ['always', 'during-runs', 'off'] as const) {
      const { session } = await createSession(modelPath, { provider: 'cpu', threads: 2, spinning });
      for (let run = 0; run < 2; run++) {
        outputs.push((await session.run(feeds, ['embedding']))['embedding']!.data as Float32Array);
      }
      await session.release();
    }
    for (const out of outputs) expect(Array.from(out)).toEqual(Array.from(outputs[0]!));
  });

  it('optimizes graphs at the basic level on the CPU and fully on a GPU', () => {
    expect(graphOptimizationLevel('cpu')).toBe('basic');
    expect(graphOptimizationLevel('cuda')).toBe('all');
    expect(graphOptimizationLevel('webgpu')).toBe('all');
  });

  it('passes each spinning mode to ONNX Runtime as its session config (default: during runs), and refuses an unknown one', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    try {
      for (const spinning of ['always', 'during-runs', 'off', undefined] as const) {
        const { session } = await createSession(modelPath, {
          provider: 'cpu',
          threads: 1,
          ...(spinning ? { spinning } : {}),
        });
        await session.release();
      }
      const options = create.mock.calls.map((call) => call[1] as ort.InferenceSession.SessionOptions);
      // Basic graph optimization on the CPU: the graphs come fused, and the extended level's
      // SkipLayerNormalization runs slower there than the Add + LayerNormalization it replaces.
      for (const o of options) expect(o.graphOptimizationLevel).toBe('basic');
      const extras = options.map((o) => o.extra);
      expect(extras).toEqual([
        undefined,
        { session: { force_spinning_stop: '1', intra_op: { allow_spinning: '1' } } },
        { session: { intra_op: { allow_spinning: '0' } } },
        { session: { force_spinning_stop: '1', intra_op: { allow_spinning: '1' } } },
      ]);
    } finally {
      create.mockRestore();
    }
    // The boolean of earlier versions must not silently mean "always".
    await expect(
      createSession(modelPath, { provider: 'cpu', spinning: false as unknown as 'off' }),
    ).rejects.toThrow(RangeError);
  });

  it('reports a model the CPU cannot load as a BundleError naming the file, with the cause', async () => {
    const broken = join(dir, 'broken.onnx');
    await writeFile(broken, new Uint8Array([1, 2, 3]));
    const error = await createSession(broken, { provider: 'cpu' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BundleError);
    expect((error as Error).message).toContain('broken.onnx');
    expect((error as Error).cause).toBeDefined();
  });
});
