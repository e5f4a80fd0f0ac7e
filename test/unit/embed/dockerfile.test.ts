import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jobConfigFromEnv } from '../../../functions/embed/src/config.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dockerfile = readFileSync(join(ROOT, 'functions/embed/Dockerfile'), 'utf8');
// Instructions with their continuation lines joined, comments dropped.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

describe('the GPU image Dockerfile', () => {
  it('copies only paths that exist in the repository', () => {
    const copies = instructions.filter((l) => l.startsWith('COPY '));
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const args = copy
        .split(/\s+/)
        .slice(1)
        .filter((a) => !a.startsWith('--'));
      for (const source of args.slice(0, -1)) expect(existsSync(join(ROOT, source)), source).toBe(true);
    }
  });

  it('runs the job runner through tsx, which a production install keeps', () => {
    const entry = instructions.find((l) => l.startsWith('ENTRYPOINT '))!;
    const argv = JSON.parse(entry.slice('ENTRYPOINT '.length)) as string[];
    expect(argv.slice(0, 3)).toEqual(['node', '--import', 'tsx']);
    expect(argv[3]).toBe('functions/embed/src/job-main.ts');
    expect(existsSync(join(ROOT, argv[3]!))).toBe(true);
    const prodDeps = ['cli', 'functions/embed'].flatMap((w) =>
      Object.keys(JSON.parse(readFileSync(join(ROOT, w, 'package.json'), 'utf8')).dependencies ?? {}),
    );
    expect(prodDeps).toContain('tsx');
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
  });

  it('installs the CUDA provider of onnxruntime-node and asks for it by name', () => {
    expect(dockerfile).toMatch(/^FROM nvidia\/cuda:12\.[\d.]+-cudnn-runtime/m);
    expect(dockerfile).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect(dockerfile).toMatch(/libonnxruntime_providers_cuda\.so/);
    const env = Object.fromEntries(
      instructions
        .filter((l) => l.startsWith('ENV '))
        .flatMap((l) => [...l.slice(4).matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!])),
    );
    expect(env['PROVIDER']).toBe('cuda');
    expect(jobConfigFromEnv({ MODEL_DIR: env['MODEL_DIR'] }).provider).toBe('cuda');
  });
});
