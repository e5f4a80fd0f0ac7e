#!/usr/bin/env node
/**
 * Rebuilds hnswlib-node's addon for x86-64-v3 (AVX2, FMA) on a Linux x64 machine whose CPU has it.
 *
 * hnswlib chooses its SIMD distance code when it is compiled (`__AVX__`, `__AVX512F__`), and
 * node-gyp compiles for baseline x86-64, so every search ran the SSE code. Built for x86-64-v3, one
 * search of a 50,000-vector 768-d segment (ef 100) takes 0.83 ms instead of 1.13 (2-core AMD EPYC,
 * Zen 4); `-march=native` (AVX-512 there) 0.73, but a binary built on one machine must run on the
 * others that get it: Lambda's x86_64 CPUs all have AVX2, not all AVX-512.
 *
 * The repository's postinstall runs it. It never fails an install: when it cannot build (no
 * node-gyp, no compiler) it keeps the portable addon and says why. It builds nothing
 * - with COHORT_HNSWLIB_SIMD=off (an image for x86 CPUs older than 2013–2015),
 * - off Linux x64 (hnswlib has no ARM SIMD code; other systems keep their compiler's defaults),
 * - on a CPU without every x86-64-v3 feature (the binary would die of an illegal instruction),
 * - when the installed addon already is the x86-64-v3 build (its marker file says so).
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `-march` the addon is built for. */
export const SIMD_MARCH = 'x86-64-v3';

/** /proc/cpuinfo flags that x86-64-v3 needs (`abm` is how Linux names LZCNT). */
export const X86_64_V3_FLAGS = ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'];

/** Longest the rebuild may take before the portable build is kept, in ms. */
const BUILD_TIMEOUT_MS = 300_000;

/** File beside the addon that records the build (`{ "march": "x86-64-v3" }`). */
export const SIMD_MARKER = 'cohort-simd.json';

/**
 * Whether to rebuild, and why (or why not).
 * @param {{ platform: string, arch: string, env: Record<string, string | undefined>, cpuinfo: string | undefined, marker: string | undefined }} machine
 * @returns {{ build: boolean, reason: string }}
 */
export function planHnswlibBuild(machine) {
  if (machine.env.COHORT_HNSWLIB_SIMD === 'off') {
    return { build: false, reason: 'COHORT_HNSWLIB_SIMD=off: keeping the portable build' };
  }
  if (machine.platform !== 'linux' || machine.arch !== 'x64') {
    return { build: false, reason: `${machine.platform}-${machine.arch}: keeping the default build` };
  }
  const flagLine = machine.cpuinfo?.split('\n').find((line) => line.startsWith('flags'));
  const flags = new Set(
    flagLine
      ?.slice(flagLine.indexOf(':') + 1)
      .trim()
      .split(/\s+/) ?? [],
  );
  const missing = X86_64_V3_FLAGS.filter((f) => !flags.has(f));
  if (missing.length > 0) {
    return { build: false, reason: `this CPU lacks ${missing.join(', ')}: keeping the portable build` };
  }
  let built;
  try {
    built = machine.marker === undefined ? undefined : JSON.parse(machine.marker).march;
  } catch {
    built = undefined;
  }
  if (built === SIMD_MARCH) return { build: false, reason: `already built for ${SIMD_MARCH}` };
  return { build: true, reason: `building for ${SIMD_MARCH} (AVX2, FMA)` };
}

/** node-gyp's entry: the one npm gives its scripts, else the one bundled with npm beside node. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  ];
  return candidates.find((c) => c && existsSync(c));
}

/**
 * Rebuilds the addon of the hnswlib-node package in `packageDir` when {@link planHnswlibBuild}
 * says so. The build runs in a copy inside the package (so that `node-addon-api` resolves), and the
 * new addon replaces the old one only once it has built and answered a search in a fresh process.
 * @returns {{ built: boolean, reason: string }}
 */
export function rebuildHnswlib(packageDir, env = process.env) {
  const addon = join(packageDir, 'build', 'Release', 'addon.node');
  const markerPath = join(packageDir, 'build', 'Release', SIMD_MARKER);
  const read = (path) => (existsSync(path) ? readFileSync(path, 'utf8') : undefined);
  const plan = planHnswlibBuild({
    platform: process.platform,
    arch: process.arch,
    env,
    cpuinfo: process.platform === 'linux' ? read('/proc/cpuinfo') : undefined,
    marker: read(markerPath),
  });
  if (!plan.build) return { built: false, reason: plan.reason };
  const gyp = nodeGyp();
  if (!gyp) return { built: false, reason: 'node-gyp not found: keeping the portable build' };
  const work = join(packageDir, '.cohort-simd-build');
  rmSync(work, { recursive: true, force: true });
  try {
    for (const part of ['binding.gyp', 'package.json', 'src']) {
      cpSync(join(packageDir, part), join(work, part), { recursive: true });
    }
    // Node's own headers when they are installed beside it (distribution packages, official
    // tarballs): node-gyp would otherwise download them, and installs may have no network.
    const prefix = join(dirname(process.execPath), '..');
    const nodedir =
      env.npm_config_nodedir ??
      (existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined);
    const build = spawnSync(
      process.execPath,
      [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])],
      {
        cwd: work,
        env: { ...env, CXXFLAGS: `${env.CXXFLAGS ?? ''} -march=${SIMD_MARCH}`.trim() },
        encoding: 'utf8',
        // A compile takes about 10 s on 2 cores; a header download on a dead network could hang.
        timeout: BUILD_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    const built = join(work, 'build', 'Release', 'addon.node');
    if (build.status !== 0 || !existsSync(built)) {
      // The first line that names the problem (compiler or make), else node-gyp's own last words.
      const lines = `${build.stdout ?? ''}\n${build.stderr ?? ''}\n${build.error?.message ?? ''}`
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean);
      const cause =
        lines.find(
          (line) => /error:|\*\*\*|fatal|ENOENT|EACCES/i.test(line) && !line.startsWith('gyp ERR! stack'),
        ) ??
        lines.slice(-1)[0] ??
        `exit ${build.status}`;
      return { built: false, reason: `the build failed, keeping the portable one: ${cause}` };
    }
    // A search in a fresh process: a binary this CPU cannot run must not replace one it can.
    const probe = spawnSync(
      process.execPath,
      [
        '-e',
        `const { HierarchicalNSW } = require(${JSON.stringify(built)});
         const index = new HierarchicalNSW('l2', 16); index.initIndex(8);
         for (let i = 0; i < 8; i++) index.addPoint(Array.from({ length: 16 }, (_, d) => Math.sin(i + d)), i);
         if (index.searchKnn(Array.from({ length: 16 }, (_, d) => Math.sin(d)), 1).neighbors[0] !== 0) process.exit(3);`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (probe.status !== 0) {
      return {
        built: false,
        reason: `the new build did not answer a search (exit ${probe.status ?? probe.signal}): keeping the portable one`,
      };
    }
    // Beside the old one, then renamed over it: an interrupted copy never leaves a truncated addon.
    const staged = `${addon}.${process.pid}.tmp`;
    copyFileSync(built, staged);
    renameSync(staged, addon);
    writeFileSync(markerPath, `${JSON.stringify({ march: SIMD_MARCH })}\n`);
    return { built: true, reason: `built for ${SIMD_MARCH} (AVX2, FMA)` };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  // An optional speed-up: whatever goes wrong, the install goes on with the portable build.
  try {
    let packageDir;
    try {
      packageDir = dirname(createRequire(import.meta.url).resolve('hnswlib-node/package.json'));
    } catch {
      packageDir = undefined;
    }
    console.log(
      `hnswlib-node: ${packageDir ? rebuildHnswlib(packageDir).reason : 'not installed, nothing to build'}`,
    );
  } catch (error) {
    console.log(`hnswlib-node: not rebuilt, keeping the portable build (${error?.message ?? error})`);
  }
}
