import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  planHnswlibBuild,
  rebuildHnswlib,
  SIMD_MARCH,
  SIMD_MARKER,
  X86_64_V3_FLAGS,
} from '../../../layers/index/scripts/hnswlib-simd.mjs';
import { tempDir } from '../../helpers/encoder.ts';

const v3Flags = `processor\t: 0\nflags\t\t: fpu sse sse2 ${X86_64_V3_FLAGS.join(' ')} avx512f\n`;
const machine = {
  platform: 'linux',
  arch: 'x64',
  env: {},
  cpuinfo: v3Flags,
  marker: undefined,
};

/** This machine, as the postinstall sees it. */
function thisMachine() {
  return {
    platform: process.platform,
    arch: process.arch,
    cpuinfo: existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : undefined,
  };
}

describe('planHnswlibBuild', () => {
  it('builds for x86-64-v3 on a Linux x64 CPU with every feature it needs', () => {
    expect(planHnswlibBuild(machine)).toEqual({ build: true, reason: expect.stringContaining(SIMD_MARCH) });
    // A marker from another build (or a broken one) is rebuilt over.
    expect(planHnswlibBuild({ ...machine, marker: '{"march":"x86-64"}' }).build).toBe(true);
    expect(planHnswlibBuild({ ...machine, marker: 'not json' }).build).toBe(true);
  });

  it('keeps the portable build on a CPU that lacks a feature, naming it', () => {
    const noAvx2 = v3Flags.replace(' avx2 ', ' ');
    expect(planHnswlibBuild({ ...machine, cpuinfo: noAvx2 })).toEqual({
      build: false,
      reason: expect.stringContaining('lacks avx2'),
    });
    expect(planHnswlibBuild({ ...machine, cpuinfo: undefined }).build).toBe(false);
  });

  it('builds nothing off Linux x64, when turned off, or when the addon already is the x86-64-v3 build', () => {
    expect(planHnswlibBuild({ ...machine, arch: 'arm64' }).build).toBe(false);
    expect(planHnswlibBuild({ ...machine, platform: 'darwin' }).build).toBe(false);
    expect(planHnswlibBuild({ ...machine, env: { COHORT_HNSWLIB_SIMD: 'off' } })).toEqual({
      build: false,
      reason: expect.stringContaining('COHORT_HNSWLIB_SIMD=off'),
    });
    expect(planHnswlibBuild({ ...machine, marker: `{"march":"${SIMD_MARCH}"}` })).toEqual({
      build: false,
      reason: `already built for ${SIMD_MARCH}`,
    });
  });

  it('rebuilds a copy of hnswlib-node for x86-64-v3 where the plan says so, once, and the new addon searches', async () => {
    const root = await tempDir('hnswlib-simd-ok-');
    try {
      const installed = dirname(createRequire(import.meta.url).resolve('hnswlib-node/package.json'));
      const copy = join(root.dir, 'hnswlib-node');
      for (const part of ['binding.gyp', 'package.json', 'src', 'build/Release/addon.node']) {
        cpSync(join(installed, part), join(copy, part), { recursive: true });
      }
      // binding.gyp finds node-addon-api through Node's module resolution from the build folder.
      mkdirSync(join(root.dir, 'node_modules'));
      symlinkSync(
        dirname(createRequire(import.meta.url).resolve('node-addon-api/package.json')),
        join(root.dir, 'node_modules', 'node-addon-api'),
      );
      const addon = join(copy, 'build', 'Release', 'addon.node');
      writeFileSync(addon, 'the portable build');
      const env = { ...process.env, COHORT_HNSWLIB_SIMD: undefined };
      const plan = planHnswlibBuild({ ...thisMachine(), env, marker: undefined });
      const result = rebuildHnswlib(copy, env);
      if (!plan.build) {
        expect(result).toEqual({ built: false, reason: plan.reason });
        expect(readFileSync(addon, 'utf8')).toBe('the portable build');
        return;
      }
      expect(result).toEqual({ built: true, reason: `built for ${SIMD_MARCH} (AVX2, FMA)` });
      expect(JSON.parse(readFileSync(join(copy, 'build', 'Release', SIMD_MARKER), 'utf8'))).toEqual({
        march: SIMD_MARCH,
      });
      const { HierarchicalNSW } = createRequire(import.meta.url)(addon) as typeof import('hnswlib-node');
      const index = new HierarchicalNSW('ip', 4);
      index.initIndex(2);
      index.addPoint([1, 0, 0, 0], 0);
      index.addPoint([0, 1, 0, 0], 1);
      expect(index.searchKnn([0, 0.9, 0.1, 0], 1).neighbors).toEqual([1]);
      expect(rebuildHnswlib(copy, env)).toEqual({ built: false, reason: `already built for ${SIMD_MARCH}` });
      expect(readdirSync(copy).sort()).toEqual(['binding.gyp', 'build', 'package.json', 'src']);
    } finally {
      await root.cleanup();
    }
  }, 120_000);

  it('keeps the installed addon when the build fails, and leaves no build folder behind', async () => {
    const root = await tempDir('hnswlib-simd-');
    try {
      // A package whose build cannot succeed: its only source file does not exist.
      mkdirSync(join(root.dir, 'src'));
      mkdirSync(join(root.dir, 'build', 'Release'), { recursive: true });
      writeFileSync(join(root.dir, 'package.json'), '{"name":"broken-addon","version":"1.0.0"}');
      writeFileSync(
        join(root.dir, 'binding.gyp'),
        JSON.stringify({ targets: [{ target_name: 'addon', sources: ['src/missing.cc'] }] }),
      );
      const addon = join(root.dir, 'build', 'Release', 'addon.node');
      writeFileSync(addon, 'the portable build');
      const env = { ...process.env, COHORT_HNSWLIB_SIMD: undefined };
      const plan = planHnswlibBuild({ ...thisMachine(), env, marker: undefined });
      const result = rebuildHnswlib(root.dir, env);
      expect(result.built).toBe(false);
      if (plan.build) expect(result.reason).toMatch(/failed|node-gyp not found/);
      else expect(result.reason).toBe(plan.reason);
      expect(readFileSync(addon, 'utf8')).toBe('the portable build');
      expect(readdirSync(root.dir).sort()).toEqual(['binding.gyp', 'build', 'package.json', 'src']);
    } finally {
      await root.cleanup();
    }
  }, 60_000);
});
