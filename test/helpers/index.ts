import { join } from 'node:path';
import { seededUniform } from '../../layers/encoder/src/fixture.ts';
import type { ChunkMeta } from '../../layers/index/src/segment/types.ts';
import { LocalDirectoryStore } from '../../layers/index/src/store/local.ts';
import { IndexWriter } from '../../layers/index/src/writer.ts';

/**
 * A segment's input of `n` chunks: seeded uniform vectors in [-1, 1) (the segment builder
 * normalizes them) and the chunk metadata that `chunk(i)` gives.
 */
export function syntheticSegment(
  n: number,
  dims: number,
  seed: number,
  chunk: (i: number) => ChunkMeta,
): { vectors: Float32Array; chunks: ChunkMeta[] } {
  const r = seededUniform(seed);
  const vectors = new Float32Array(n * dims);
  for (let i = 0; i < vectors.length; i++) vectors[i] = r() * 2 - 1;
  return { vectors, chunks: Array.from({ length: n }, (_, i) => chunk(i)) };
}

/** Options of {@link localIndex}. */
export interface LocalIndexOptions {
  readonly dims: number;
  readonly modelFingerprint: string;
  /** HNSW M. Default 8: small graphs keep tests fast. */
  readonly M?: number;
  /** HNSW efConstruction. Default 50. */
  readonly efConstruction?: number;
  /** fsync every write. Default false: tests need atomicity, not durability. */
  readonly fsync?: boolean;
}

/** A directory store under `root/name` with a writer whose work directory is `root/name-work`. */
export function localIndex(root: string, name: string, options: LocalIndexOptions) {
  const dir = join(root, name);
  const workDir = join(root, `${name}-work`);
  const store = new LocalDirectoryStore(dir, { fsync: options.fsync ?? false });
  const writer = new IndexWriter(store, {
    modelFingerprint: options.modelFingerprint,
    dims: options.dims,
    workDir,
    M: options.M ?? 8,
    efConstruction: options.efConstruction ?? 50,
  });
  return { dir, workDir, store, writer };
}
