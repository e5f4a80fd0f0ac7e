import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleError, ModelUnavailableError } from '../../../layers/encoder/src/errors.ts';
import { writeRandomBertCheckpoint } from '../../../layers/encoder/src/fixture.ts';
import {
  DEFAULT_MODEL_REPO,
  FIXTURE_MODEL,
  resolveModelBundle,
} from '../../../layers/encoder/src/resolve.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { type FakeHub, startFakeHub, unreachableUrl } from '../../helpers/hub-server.ts';

let root: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-resolve-'));
});
afterAll(async () => cleanup());

describe('resolveModelBundle', () => {
  it('builds the fixture bundle once into the cache and reuses it', async () => {
    const cacheDir = join(root, 'fixture-cache');
    const first = await resolveModelBundle(FIXTURE_MODEL, { cacheDir, variants: ['int8'] });
    expect(first.fixture).toBe(true);
    expect(first.origin).toBe('argument');
    expect(first.dir).toBe(join(cacheDir, 'models', 'fixture'));
    expect(Object.keys(first.info.variants)).toEqual(['int8']);
    const second = await resolveModelBundle(undefined, { cacheDir, env: { COHORT_MODEL: 'fixture' } });
    expect(second.origin).toBe('env');
    expect(second.info.fingerprint).toBe(first.info.fingerprint);
    // No scratch checkpoint directory is left behind.
    expect(await readdir(join(cacheDir, 'models'))).toEqual(['fixture']);
  });

  it('accepts a bundle directory and refuses a directory without a bundle', async () => {
    const cacheDir = join(root, 'dir-cache');
    const fixture = await resolveModelBundle(FIXTURE_MODEL, { cacheDir, variants: ['int8'] });
    const named = await resolveModelBundle(fixture.dir, { cacheDir: join(root, 'unused') });
    // The fixture bundle named by its directory is still the fixture model: callers must warn.
    expect(named).toMatchObject({ dir: fixture.dir, fixture: true, origin: 'argument' });
    await expect(resolveModelBundle(root, { cacheDir })).rejects.toThrow(BundleError);
    await expect(resolveModelBundle(undefined, { cacheDir, env: { COHORT_MODEL: root } })).rejects.toThrow(
      /COHORT_MODEL/,
    );
  });

  it('names the options when no model is cached and the hub is out of reach', async () => {
    const endpoint = await unreachableUrl();
    const error = await resolveModelBundle(undefined, {
      cacheDir: join(root, 'offline-cache'),
      env: {},
      endpoint,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelUnavailableError);
    const message = (error as Error).message;
    expect(message).toContain(DEFAULT_MODEL_REPO);
    expect(message).toContain('COHORT_MODEL');
    expect(message).toContain('COHORT_MODEL=fixture');
  });

  describe('with the hub in reach', () => {
    let hub: FakeHub;
    beforeAll(async () => {
      const checkpoint = join(root, 'hub-checkpoint');
      await writeRandomBertCheckpoint(checkpoint);
      hub = await startFakeHub({
        repo: DEFAULT_MODEL_REPO,
        commit: 'abcdef0123456789abcdef0123456789abcdef01',
        sourceDir: checkpoint,
      });
    });
    afterAll(async () => hub.close());

    it('pulls and imports the default model, then finds it in the cache', async () => {
      const cacheDir = join(root, 'hub-cache');
      const stages: string[] = [];
      let bytes = 0;
      const pulled = await resolveModelBundle(undefined, {
        cacheDir,
        env: {},
        endpoint: hub.hubUrl,
        variants: ['int8'],
        onStage: (stage) => stages.push(stage),
        onProgress: (event) => {
          bytes = Math.max(bytes, event.receivedBytes);
        },
      });
      expect(pulled).toMatchObject({ fixture: false, origin: 'hub' });
      expect(pulled.info.source.repo).toBe(DEFAULT_MODEL_REPO);
      expect(pulled.info.source.commit).toBe('abcdef0123456789abcdef0123456789abcdef01');
      expect(stages.length).toBeGreaterThan(0);
      expect(bytes).toBeGreaterThan(0);
      const requests = hub.fileRequests().length;
      const cached = await resolveModelBundle(undefined, { cacheDir, env: {}, endpoint: hub.hubUrl });
      expect(cached).toMatchObject({ dir: pulled.dir, origin: 'cache' });
      expect(hub.fileRequests().length).toBe(requests);
    });
  });
});
