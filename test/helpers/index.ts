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

/**
 * A segment's input of `n` chunks of notes `<prefix>0..`, two chunks a note, of patients p0..p2,
 * each chunk `length` characters of a `hpi` section with `tokens` tokens, sourced from
 * `notes/<noteId>.txt`.
 */
export function twoChunkNotes(
  n: number,
  dims: number,
  seed: number,
  prefix: string,
  shape: { readonly length: number; readonly tokens: number },
): { vectors: Float32Array; chunks: ChunkMeta[] } {
  return syntheticSegment(n, dims, seed, (i) => ({
    noteId: `${prefix}${Math.floor(i / 2)}`,
    patientId: `p${i % 3}`,
    section: 'hpi',
    start: (i % 2) * shape.length,
    end: (i % 2) * shape.length + shape.length,
    tokens: shape.tokens,
    assertions: [],
    flags: [],
    source: { key: `notes/${prefix}${Math.floor(i / 2)}.txt`, sequencer: '0A' },
  }));
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
