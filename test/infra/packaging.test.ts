import { spawnSync } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../../infra/lib/packaging/esbuild-bundle.ts';
import {
  CLINICAL_BERT,
  checkBinary,
  containerBuildCommand,
  imageExcludes,
  installedVersion,
  int8ModelBytes,
  LAMBDA_UNZIPPED_LIMIT,
  LAYER_PACKAGES,
  type LayerMeasure,
  modelFilesFor,
  NativeLayerError,
  REPO_ROOT,
  stageNativeLayer,
} from '../../infra/lib/packaging/index.ts';

const NODE_MODULES = join(REPO_ROOT, 'node_modules');
let work: string;
let layer: LayerMeasure;
let fnDir: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'cohort-packaging-'));
  layer = stageNativeLayer(NODE_MODULES, join(work, 'layer'));
  fnDir = join(work, 'function');
  await bundle(join(REPO_ROOT, 'test/infra/fixtures/probe-handler.ts'), fnDir, REPO_ROOT);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('native layer', () => {
  it('holds the runtime packages under nodejs/node_modules and only Linux x64 glibc binaries', () => {
    expect(readdirSync(join(work, 'layer/nodejs/node_modules')).sort()).toEqual([...LAYER_PACKAGES].sort());
    const binaries = layer.binaries
      .map((b) => b.file.slice(join(work, 'layer/nodejs/node_modules/').length))
      .sort();
    expect(binaries).toEqual([
      'hnswlib-node/build/Release/addon.node',
      'onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
      'onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
      'tokenizers/tokenizers.linux-x64-gnu.node',
    ]);
  });

  it('needs no newer glibc than 2.34 nor libstdc++ than 3.4.29 (Lambda on Amazon Linux 2023)', () => {
    for (const b of layer.binaries) {
      const [major, minor] = (b.glibc ?? '2.0').split('.').map(Number);
      expect(major === 2 && minor! <= 34, `${b.file} needs GLIBC_${b.glibc}`).toBe(true);
      const cxx = (b.glibcxx ?? '3.4.0').split('.').map(Number);
      expect(
        cxx[0] === 3 && cxx[1] === 4 && (cxx[2] ?? 0) <= 29,
        `${b.file} needs GLIBCXX_${b.glibcxx}`,
      ).toBe(true);
    }
  });

  it('pins the container build to the versions installed here', () => {
    const pinned = JSON.parse(readFileSync(join(REPO_ROOT, 'infra/layers/native/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const [name, version] of Object.entries(pinned.dependencies)) {
      expect(installedVersion(NODE_MODULES, name), name).toBe(version);
    }
  });

  it('compiles hnswlib-node for AVX2 in the container build unless COHORT_HNSWLIB_SIMD=off', () => {
    const script = (env: NodeJS.ProcessEnv) => containerBuildCommand(env).at(-1)!;
    expect(script({})).toContain('CXXFLAGS=-march=x86-64-v3');
    expect(script({ COHORT_HNSWLIB_SIMD: 'off' })).not.toContain('CXXFLAGS');
    expect(script({})).toContain('node_modules/hnswlib-node/.cohort-simd-build');
  });

  it('refuses binaries built against a newer glibc than Lambda has', () => {
    const fake = join(work, 'fake-modules');
    for (const name of LAYER_PACKAGES) {
      mkdirSync(join(fake, name), { recursive: true });
      writeFileSync(join(fake, name, 'package.json'), JSON.stringify({ name, version: '0.0.0' }));
    }
    mkdirSync(join(fake, 'hnswlib-node/build/Release'), { recursive: true });
    writeFileSync(
      join(fake, 'hnswlib-node/build/Release/addon.node'),
      '\x7fELF memcpy GLIBC_2.2.5 GLIBC_2.38 GLIBCXX_3.4.32',
    );
    expect(checkBinary(join(fake, 'hnswlib-node/build/Release/addon.node'))).toMatchObject({
      glibc: '2.38',
      glibcxx: '3.4.32',
    });
    expect(() => stageNativeLayer(fake, join(work, 'fake-layer'))).toThrow(NativeLayerError);
    expect(() => stageNativeLayer(fake, join(work, 'fake-layer'))).toThrow(/addon.node needs GLIBC_2.38/);
  });

  it('leaves room for the int8 ClinicalBERT and the bundle under the 250 MB unzipped limit', () => {
    const bundleBytes = files(fnDir).reduce((sum, f) => sum + statSync(f).size, 0);
    const model = int8ModelBytes(CLINICAL_BERT);
    // The int8 BERT-base graph measured 176.4 MB; the estimate must agree within 1%.
    expect(Math.abs(model - 176_431_752) / 176_431_752).toBeLessThan(0.01);
    expect(layer.bytes + bundleBytes + model).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);
  });
});

describe('handler bundle', () => {
  it('is one ES module with the workspace assets it reads beside it', () => {
    const listed = files(fnDir).map((f) => f.slice(fnDir.length + 1));
    expect(listed).toContain('index.mjs');
    expect(listed.some((f) => f.startsWith('layers/notes/assets/sections/'))).toBe(true);
    expect(listed.some((f) => f.startsWith('layers/encoder/assets/'))).toBe(true);
    expect(listed.some((f) => f.includes('node_modules'))).toBe(false);
  });

  it('runs outside the repository with only the native layer on NODE_PATH, as in Lambda', () => {
    // Copy the function where no node_modules can be found by walking up, like /var/task.
    const task = join(work, 'task');
    cpSync(fnDir, task, { recursive: true });
    const run = spawnSync(
      process.execPath,
      // No --input-type=module: workers inherit execArgv, and the graph builder's eval'd worker is CommonJS.
      ['-e', "import('./index.mjs').then((m) => m.handler()).then((r) => console.log(JSON.stringify(r)))"],
      {
        cwd: task,
        env: { PATH: process.env['PATH'], NODE_PATH: join(work, 'layer/nodejs/node_modules') },
        encoding: 'utf8',
      },
    );
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({
      sections: ['history_of_present_illness', 'medications'],
      tokens: 12,
      cpu: true,
      nearest: [0],
      graphBytes: expect.any(Number),
    });
  });

  it('fails to load without the layer (so the layer is what provides the native packages)', () => {
    const task = join(work, 'task');
    const run = spawnSync(
      process.execPath,
      ['-e', "import('./index.mjs').catch((e) => { console.error(e.message); process.exit(1); })"],
      {
        cwd: task,
        env: { PATH: process.env['PATH'] },
        encoding: 'utf8',
      },
    );
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/Cannot find module '(onnxruntime-node|tokenizers|hnswlib-node)'/);
  });
});

describe('model layer and job image', () => {
  it('keeps the int8 weights, model.json and tokenizer files of a bundle, not the other variants', () => {
    const dir = join(work, 'bundle');
    mkdirSync(dir);
    const info = {
      variants: {
        fp32: { file: 'model.onnx' },
        int8: { file: 'model.int8.onnx' },
        fp16: { file: 'model.fp16.onnx' },
      },
    };
    for (const f of ['model.onnx', 'model.int8.onnx', 'model.fp16.onnx', 'vocab.txt', 'config.json']) {
      writeFileSync(join(dir, f), f);
    }
    writeFileSync(join(dir, 'model.json'), JSON.stringify(info));
    expect(modelFilesFor(dir).sort()).toEqual(['config.json', 'model.int8.onnx', 'model.json', 'vocab.txt']);
  });

  it('sends the image build only the manifests and workspaces', () => {
    const excludes = imageExcludes();
    expect(excludes.slice(0, 2)).toEqual(['*', '.*']);
    for (const keep of [
      '!package.json',
      '!package-lock.json',
      '!functions/embed',
      '!layers/encoder',
      '!cli',
    ]) {
      expect(excludes).toContain(keep);
    }
    expect(excludes).toContain('**/node_modules');
  });
});
