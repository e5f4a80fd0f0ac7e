/**
 * The native-dependency layer: onnxruntime-node, tokenizers and hnswlib-node with what they load at run
 * time, for Lambda's Linux x64 (Amazon Linux 2023, glibc 2.34), under `nodejs/node_modules`.
 *
 * Two ways to build it:
 * - in a container (the SAM build image for nodejs24.x, which is Amazon Linux 2023) when a container engine
 *   answers at synth time: `npm install` there compiles hnswlib-node against the Lambda glibc;
 * - otherwise by copying the packages installed in this repository, keeping only the linux-x64 (glibc)
 *   binaries, after checking that no binary needs a newer glibc or libstdc++ than Lambda has. A binary that
 *   does fails the synth with the file and the version it needs. hnswlib-node's addon is then the
 *   repository's, built for x86-64-v3 where this machine has it (so does every Lambda x86_64 CPU).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Packages in the layer: the three native ones and the pure-JS packages they require at run time. */
export const LAYER_PACKAGES = [
  'onnxruntime-node',
  'onnxruntime-common',
  'tokenizers',
  'hnswlib-node',
  'bindings',
  'file-uri-to-path',
] as const;

/** Newest symbol versions Lambda's nodejs24.x runtime (Amazon Linux 2023) provides. */
export const LAMBDA_GLIBC = '2.34';
export const LAMBDA_GLIBCXX = '3.4.29';

/**
 * Paths (relative to a package directory) removed from the layer: other platforms' binaries, build
 * intermediates and sources. Everything kept is what Linux x64 glibc loads.
 */
export const PRUNE: Readonly<Record<string, readonly string[]>> = {
  'onnxruntime-node': [
    'bin/napi-v6/darwin',
    'bin/napi-v6/win32',
    'bin/napi-v6/linux/arm64',
    'script',
    // The CUDA provider (only downloaded for GPU images) is never used by a CPU Lambda.
    'bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so',
    'bin/napi-v6/linux/x64/libonnxruntime_providers_tensorrt.so',
  ],
  tokenizers: [], // every `.node` except linux-x64-gnu is removed by pattern below
  'hnswlib-node': [
    'src',
    'binding.gyp',
    'build/Release/obj.target',
    'build/Release/.deps',
    'build/Makefile',
    // What an interrupted postinstall rebuild (layers/index/scripts/hnswlib-simd.mjs) may leave.
    '.cohort-simd-build',
  ],
};

/** One binary's newest required symbol versions. */
export interface BinaryCheck {
  readonly file: string;
  readonly bytes: number;
  readonly glibc: string | undefined;
  readonly glibcxx: string | undefined;
}

/** Sizes of a staged layer. */
export interface LayerMeasure {
  /** Unzipped bytes of the whole layer. */
  readonly bytes: number;
  /** Unzipped bytes per package. */
  readonly packages: Readonly<Record<string, number>>;
  readonly binaries: readonly BinaryCheck[];
}

/** The layer cannot be built for Lambda from what is installed here. */
export class NativeLayerError extends Error {
  override readonly name = 'NativeLayerError';
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function newest(text: string, tag: string): string | undefined {
  let best: string | undefined;
  for (const match of text.matchAll(new RegExp(`${tag}_(\\d+(?:\\.\\d+)+)`, 'g'))) {
    const version = match[1];
    if (version !== undefined && (best === undefined || compareVersions(version, best) > 0)) best = version;
  }
  return best;
}

/**
 * The newest `GLIBC_` and `GLIBCXX_` symbol versions an ELF file names. The version strings of the
 * symbols a binary imports sit in its dynamic string table, so a scan of the bytes finds the same
 * versions `objdump -T | grep GLIBC_` lists (it can only over-report, never miss one).
 */
export function checkBinary(file: string): BinaryCheck {
  const bytes = readFileSync(file);
  const text = bytes.toString('latin1');
  return { file, bytes: bytes.length, glibc: newest(text, 'GLIBC'), glibcxx: newest(text, 'GLIBCXX') };
}

function walk(dir: string, visit: (path: string) => void): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, visit);
    else if (entry.isFile()) visit(path);
  }
}

function isElf(path: string): boolean {
  return /\.(node|so)(\.\d+)*$/.test(path);
}

/**
 * Copies the layer packages from `nodeModules` into `outDir/nodejs/node_modules`, pruned to Linux x64
 * glibc, and checks the binaries against Lambda's glibc and libstdc++.
 * @throws NativeLayerError when a package is missing, the host is not Linux x64, or a binary is too new
 */
export function stageNativeLayer(nodeModules: string, outDir: string): LayerMeasure {
  const target = join(outDir, 'nodejs', 'node_modules');
  mkdirSync(target, { recursive: true });
  for (const name of LAYER_PACKAGES) {
    const from = join(nodeModules, name);
    if (!existsSync(join(from, 'package.json'))) {
      throw new NativeLayerError(`native layer: ${name} is not installed in ${nodeModules}; run npm ci`);
    }
    cpSync(from, join(target, name), { recursive: true, dereference: true });
    for (const path of PRUNE[name] ?? []) rmSync(join(target, name, path), { recursive: true, force: true });
  }
  for (const file of readdirSync(join(target, 'tokenizers'))) {
    if (file.endsWith('.node') && file !== 'tokenizers.linux-x64-gnu.node') {
      rmSync(join(target, 'tokenizers', file));
    }
  }
  const hnsw = join(target, 'hnswlib-node', 'build', 'Release', 'addon.node');
  if (!existsSync(hnsw))
    throw new NativeLayerError('native layer: hnswlib-node has no build/Release/addon.node');
  const measure = measureLayer(outDir);
  const tooNew = measure.binaries.filter(
    (b) =>
      (b.glibc !== undefined && compareVersions(b.glibc, LAMBDA_GLIBC) > 0) ||
      (b.glibcxx !== undefined && compareVersions(b.glibcxx, LAMBDA_GLIBCXX) > 0),
  );
  if (tooNew.length > 0) {
    const list = tooNew
      .map((b) => `${relative(outDir, b.file)} needs GLIBC_${b.glibc} GLIBCXX_${b.glibcxx}`)
      .join('; ');
    throw new NativeLayerError(
      `native layer: built on a newer system than Lambda (glibc ${LAMBDA_GLIBC}, libstdc++ ${LAMBDA_GLIBCXX}): ${list}. ` +
        'Start a container engine (docker, or CDK_DOCKER=finch/podman) so the layer is built in the Lambda build image.',
    );
  }
  return measure;
}

/** Unzipped sizes of a staged layer directory, and the symbol versions of its binaries. */
export function measureLayer(outDir: string): LayerMeasure {
  const root = join(outDir, 'nodejs', 'node_modules');
  const packages: Record<string, number> = {};
  const binaries: BinaryCheck[] = [];
  let bytes = 0;
  walk(outDir, (path) => {
    const size = statSync(path).size;
    bytes += size;
    const rel = relative(root, path).split('/');
    const pkg = rel[0]?.startsWith('@') ? `${rel[0]}/${rel[1]}` : rel[0];
    if (pkg !== undefined && !pkg.startsWith('..')) packages[pkg] = (packages[pkg] ?? 0) + size;
    if (isElf(path)) binaries.push(checkBinary(path));
  });
  return { bytes, packages, binaries };
}

/** Whether a container engine answers (CDK bundles in containers with `CDK_DOCKER`, default `docker`). */
export function containerEngineAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  const engine = env['CDK_DOCKER'] ?? 'docker';
  const probe = spawnSync(engine, ['version', '--format', '{{.Server.Version}}'], {
    stdio: 'ignore',
    timeout: 10_000,
  });
  return probe.status === 0;
}

/**
 * The shell command that builds the same layer inside the Lambda build image: installs the packages at the
 * versions this repository has (from `package.json` in the asset input) and prunes as {@link PRUNE} says.
 * hnswlib-node compiles for x86-64-v3 (AVX2, FMA), which every Lambda x86_64 CPU has: its distance code
 * is chosen at compile time, and the baseline build searches about 25% slower (see
 * `layers/index/scripts/hnswlib-simd.mjs`, which does the same for a repository install), unless
 * `COHORT_HNSWLIB_SIMD=off` at synth time.
 */
export function containerBuildCommand(env: NodeJS.ProcessEnv = process.env): string[] {
  const prune = Object.entries(PRUNE)
    .flatMap(([name, paths]) => paths.map((p) => `node_modules/${name}/${p}`))
    .join(' ');
  const script = [
    'set -eu',
    `export HOME=/tmp npm_config_cache=/tmp/.npm ONNXRUNTIME_NODE_INSTALL=skip${env['COHORT_HNSWLIB_SIMD'] === 'off' ? '' : ' CXXFLAGS=-march=x86-64-v3'}`,
    'mkdir -p /tmp/layer && cp /asset-input/package.json /tmp/layer/ && cd /tmp/layer',
    'npm install --omit=dev --no-audit --no-fund --no-package-lock',
    `rm -rf ${prune}`,
    "find node_modules/tokenizers -name '*.node' ! -name 'tokenizers.linux-x64-gnu.node' -delete",
    'mkdir -p /asset-output/nodejs && cp -R node_modules /asset-output/nodejs/',
  ];
  return ['bash', '-c', script.join(' && ')];
}

/** Installed version of a package in `nodeModules`. */
export function installedVersion(nodeModules: string, name: string): string {
  const pkg = JSON.parse(readFileSync(join(nodeModules, name, 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
