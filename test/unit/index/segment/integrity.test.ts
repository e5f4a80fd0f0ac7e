import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError } from '../../../../layers/index/src/errors.ts';
import {
  buildSegment,
  type ChunkMeta,
  openSegment,
  type SegmentDescriptor,
  SegmentIntegrityError,
  segmentId,
} from '../../../../layers/index/src/segment/index.ts';

const dims = 32;
const n = 400;
let root: string;
let pristine: string;
let descriptor: SegmentDescriptor;
let copies = 0;

/** A fresh copy of the pristine segment to damage. */
async function copy(): Promise<string> {
  const dir = join(root, `copy-${copies++}`);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

async function failure(
  dir: string,
  expected?: Parameters<typeof openSegment>[1],
): Promise<SegmentIntegrityError> {
  const err = await openSegment(dir, expected).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(IntegrityError);
  expect(err).toBeInstanceOf(SegmentIntegrityError);
  return err as SegmentIntegrityError;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'segment-integrity-'));
  pristine = join(root, 'pristine');
  const vectors = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dims; d++) vectors[i * dims + d] = Math.sin(i * 31 + d * 7 + 1);
  }
  const chunks: ChunkMeta[] = Array.from({ length: n }, (_, i) => ({
    noteId: `n${i}`,
    patientId: 'p',
    section: 'labs',
    start: 0,
    end: 1,
    tokens: 3,
    assertions: [],
    flags: [],
  }));
  descriptor = await buildSegment({ vectors, chunks }, { dir: pristine, dims, modelFingerprint: 'model-a' });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('openSegment integrity checks', () => {
  it('opens the pristine segment with every expectation met', async () => {
    const raw = await readFile(join(pristine, 'segment.json'));
    const sha256 = createHash('sha256').update(raw).digest('hex');
    const seg = await openSegment(pristine, { id: descriptor.id, modelFingerprint: 'model-a', dims, sha256 });
    expect(seg.count).toBe(n);
  });

  it('refuses a truncated graph.hnsw before hnswlib sees it', async () => {
    const dir = await copy();
    await truncate(join(dir, 'graph.hnsw'), descriptor.files['graph.hnsw'].bytes - 100);
    const err = await failure(dir);
    expect(err.file).toBe('graph.hnsw');
    expect(err.segment).toBe(descriptor.id);
    expect(err.message).toMatch(new RegExp(`segment ${descriptor.id}: graph.hnsw: .*bytes, expected`));
  });

  it('refuses a truncated graph.hnsw even when segment.json was rewritten to match it', async () => {
    const dir = await copy();
    const graph = join(dir, 'graph.hnsw');
    await truncate(graph, Math.floor(descriptor.files['graph.hnsw'].bytes * 0.6));
    const bytes = await readFile(graph);
    const forged = {
      ...descriptor,
      files: {
        ...descriptor.files,
        'graph.hnsw': { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
      },
    };
    const { id: _id, ...body } = forged;
    await writeFile(join(dir, 'segment.json'), JSON.stringify({ ...forged, id: segmentId(body) }));
    const err = await failure(dir);
    expect(err.file).toBe('graph.hnsw');
    expect(err.message).toMatch(/shorter than its element count/);
  });

  it('refuses a graph.hnsw whose header is garbage, at the right size and checksum', async () => {
    const dir = await copy();
    const graph = join(dir, 'graph.hnsw');
    const bytes = await readFile(graph);
    bytes.fill(0xff, 0, 96);
    await writeFile(graph, bytes);
    const forged = {
      ...descriptor,
      files: {
        ...descriptor.files,
        'graph.hnsw': { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
      },
    };
    const { id: _id, ...body } = forged;
    await writeFile(join(dir, 'segment.json'), JSON.stringify({ ...forged, id: segmentId(body) }));
    expect((await failure(dir)).file).toBe('graph.hnsw');
  });

  it('refuses a flipped byte in vectors.f32', async () => {
    const dir = await copy();
    const path = join(dir, 'vectors.f32');
    const bytes = await readFile(path);
    bytes[1234] = bytes[1234]! ^ 0x01;
    await writeFile(path, bytes);
    const err = await failure(dir);
    expect(err.file).toBe('vectors.f32');
    expect(err.message).toMatch(/sha256/);
  });

  it('refuses a flipped byte in chunks.bin and in graph.hnsw', async () => {
    for (const file of ['chunks.bin', 'graph.hnsw']) {
      const dir = await copy();
      const path = join(dir, file);
      const bytes = await readFile(path);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x80;
      await writeFile(path, bytes);
      expect((await failure(dir)).file).toBe(file);
    }
  });

  it('refuses another model fingerprint, naming both', async () => {
    const err = await failure(pristine, { modelFingerprint: 'model-b' });
    expect(err.file).toBe('segment.json');
    expect(err.message).toMatch(/model-a.*model-b/);
  });

  it('refuses other dims, another id and another segment.json checksum', async () => {
    expect((await failure(pristine, { dims: 768 })).message).toMatch(/dims 32, expected 768/);
    expect((await failure(pristine, { id: '0'.repeat(64) })).file).toBe('segment.json');
    expect((await failure(pristine, { sha256: '0'.repeat(64) })).file).toBe('segment.json');
  });

  it('names each missing file', async () => {
    for (const file of ['graph.hnsw', 'vectors.f32', 'chunks.bin', 'segment.json']) {
      const dir = await copy();
      await unlink(join(dir, file));
      const err = await failure(dir);
      expect(err.file).toBe(file);
      expect(err.message).toMatch(/missing/);
    }
  });

  it('refuses an altered segment.json (content no longer matches its id)', async () => {
    const dir = await copy();
    await writeFile(join(dir, 'segment.json'), JSON.stringify({ ...descriptor, efConstruction: 100 }));
    expect((await failure(dir)).message).toMatch(/does not match its id/);
    await writeFile(join(dir, 'segment.json'), '{"format": "cohort-segment/1",');
    expect((await failure(dir)).message).toMatch(/not valid JSON/);
    await writeFile(join(dir, 'segment.json'), JSON.stringify({ ...descriptor, metric: 'l2' }));
    expect((await failure(dir)).message).toMatch(/metric "l2"/);
  });
});
