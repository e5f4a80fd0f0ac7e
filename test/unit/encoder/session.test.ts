import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderUnavailableError } from '../../../layers/encoder/src/errors.ts';
import { buildBertOnnx } from '../../../layers/encoder/src/onnx/bert.ts';
import {
  createSession,
  providerInstalled,
  type ResolvedProvider,
} from '../../../layers/encoder/src/session.ts';
import { tempDir, tinyWeights } from '../../helpers/encoder.ts';

let modelPath: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  const tmp = await tempDir();
  cleanup = tmp.cleanup;
  modelPath = join(tmp.dir, 'model.onnx');
  await writeFile(modelPath, buildBertOnnx(tinyWeights()));
});
afterAll(() => cleanup());

describe('createSession', () => {
  it('reports the CPU provider as installed and the optional CUDA download as missing on this machine', () => {
    expect(providerInstalled('cpu')).toBe(true);
    expect(providerInstalled('cuda')).toBe(false);
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
    expect(provider).toBe('cpu');
    expect(asked).toEqual(['cpu']);
    expect(logged[0]).toMatchObject({
      provider: 'cpu',
      skipped: ['cuda: not installed', 'webgpu: not installed'],
    });
    await session.release();
  });

  it('wraps a model the runtime cannot load in ProviderUnavailableError with the cause', async () => {
    const error = await createSession(new Uint8Array([1, 2, 3]), { provider: 'cpu' }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect((error as Error).cause).toBeDefined();
  });
});
