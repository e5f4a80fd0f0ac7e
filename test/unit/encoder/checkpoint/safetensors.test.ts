import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  float32Tensor,
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
} from '../../../../layers/encoder/src/checkpoint/safetensors.ts';
import { CheckpointFormatError } from '../../../../layers/encoder/src/errors.ts';
import {
  randomBertWeights,
  TINY_BERT_CONFIG,
  writeRandomBertCheckpoint,
} from '../../../../layers/encoder/src/fixture.ts';
import type { RawTensor } from '../../../../layers/encoder/src/tensor.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'safetensors-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A safetensors image from a header object and a data section, as another writer might produce. */
function image(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: number): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerLength ?? json.length));
  return Buffer.concat([prefix, json, data]);
}

const sample = (): Map<string, RawTensor> =>
  new Map<string, RawTensor>([
    ['weight', float32Tensor([2, 3], Float32Array.from([1, -2, 3.5, 0, 1e-8, -7]))],
    ['half', { dtype: 'F16', shape: [2], bytes: Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]) }],
    ['ids', { dtype: 'I64', shape: [1, 3], bytes: new Uint8Array(BigInt64Array.from([0n, 1n, -1n]).buffer) }],
    ['mask', { dtype: 'BOOL', shape: [3], bytes: Uint8Array.from([1, 0, 1]) }],
    ['scalar', float32Tensor([], Float32Array.from([42]))],
    ['empty', float32Tensor([0, 4], new Float32Array(0))],
  ]);

describe('safetensors', () => {
  it('round-trips safetensors (dtypes, scalar and empty tensors, order)', async () => {
    const path = join(tmp, 'roundtrip.safetensors');
    const tensors = sample();
    await writeSafetensors(path, tensors);
    const back = await readSafetensors(path);
    expect([...back.keys()]).toEqual([...tensors.keys()]);
    for (const [name, t] of tensors) {
      const got = back.get(name)!;
      expect({ name, dtype: got.dtype, shape: got.shape }).toEqual({ name, dtype: t.dtype, shape: t.shape });
      expect(Buffer.from(got.bytes).equals(Buffer.from(t.bytes)), name).toBe(true);
    }
  });

  it('writes __metadata__ and starts the data 8-byte aligned', async () => {
    const path = join(tmp, 'aligned.safetensors');
    await writeSafetensors(path, sample(), { format: 'pt', source: 'test' });
    const file = await readFile(path);
    const headerLength = Number(file.readBigUInt64LE(0));
    expect((8 + headerLength) % 8).toBe(0);
    const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt', source: 'test' });
    expect(parseSafetensors(file).has('__metadata__')).toBe(false);
  });

  it('reads the tiny fixture model as written by writeRandomBertCheckpoint', async () => {
    const dir = join(tmp, 'tiny');
    await writeRandomBertCheckpoint(dir);
    const tensors = await readSafetensors(join(dir, 'model.safetensors'));
    const want = randomBertWeights(TINY_BERT_CONFIG);
    expect([...tensors.keys()]).toEqual([...want.keys()]);
    for (const [name, t] of want) {
      expect(Buffer.from(tensors.get(name)!.bytes).equals(Buffer.from(t.bytes)), name).toBe(true);
    }
  });

  it('returns tensors as views into the file buffer', () => {
    const tensor = float32Tensor([4], Float32Array.from([1, 2, 3, 4]));
    const file = image({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, tensor.bytes);
    expect(parseSafetensors(file).get('x')!.bytes.buffer).toBe(file.buffer);
  });

  it('rejects a safetensors header that overruns the file', async () => {
    const file = image(
      { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } },
      new Uint8Array(4),
      1_000_000,
    );
    expect(() => parseSafetensors(file, 'bad.safetensors')).toThrow(CheckpointFormatError);
    expect(() => parseSafetensors(file, 'bad.safetensors')).toThrow(
      /bad\.safetensors: header length 1000000 does not fit/,
    );
  });

  it('rejects a file too short to hold the header length', () => {
    expect(() => parseSafetensors(new Uint8Array(5))).toThrow(/too short for safetensors/);
  });

  it('rejects a header that is not JSON', () => {
    const file = Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{nope')]);
    expect(() => parseSafetensors(file)).toThrow(/header is not valid JSON/);
  });

  it('rejects a tensor whose bytes overrun the file or do not match its shape', () => {
    const overrun = image({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8));
    expect(() => parseSafetensors(overrun)).toThrow(CheckpointFormatError);
    const mismatch = image({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, new Uint8Array(16));
    expect(() => parseSafetensors(mismatch)).toThrow(/F32\[3\] needs 12/);
  });

  it('rejects unsupported dtypes and malformed entries', () => {
    const fp8 = image({ x: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
    expect(() => parseSafetensors(fp8)).toThrow(/unsupported dtype F8_E4M3/);
    const malformed = image({ x: { dtype: 'F32', shape: 4, data_offsets: [0, 16] } }, new Uint8Array(16));
    expect(() => parseSafetensors(malformed)).toThrow(/malformed header entry/);
  });

  it('reports a truncated file with CheckpointFormatError', async () => {
    const dir = join(tmp, 'truncated');
    await writeRandomBertCheckpoint(dir);
    const whole = await readFile(join(dir, 'model.safetensors'));
    const cut = join(dir, 'cut.safetensors');
    await writeFile(cut, whole.subarray(0, whole.length - 100));
    await expect(readSafetensors(cut)).rejects.toThrow(CheckpointFormatError);
  });
});

describe('safetensors header validation', () => {
  const f32 = (shape: unknown, data_offsets: unknown) => ({ dtype: 'F32', shape, data_offsets });

  it('rejects shapes with negative, fractional, non-numeric or unsafe dimensions', () => {
    // [-1, -4] has a product of 4, which used to match the 16 bytes.
    const cases: [unknown, [number, number]][] = [
      [
        [-1, -4],
        [0, 16],
      ],
      [
        [1.5, 2],
        [0, 12],
      ],
      [['2'], [0, 8]],
      [[null], [0, 0]],
      [
        [2 ** 53, 2],
        [0, 16],
      ],
    ];
    for (const [shape, offsets] of cases) {
      const file = image({ w: f32(shape, offsets) }, new Uint8Array(16));
      expect(() => parseSafetensors(file, 'x.safetensors'), JSON.stringify(shape)).toThrow(
        CheckpointFormatError,
      );
      expect(() => parseSafetensors(file, 'x.safetensors'), JSON.stringify(shape)).toThrow(
        /x\.safetensors: tensor w has shape .* not a list of non-negative integers/,
      );
    }
  });

  it('rejects data_offsets that are not ordered non-negative integers within the data', () => {
    const cases: unknown[] = [
      [8, 4], // end before begin, with a shape whose product matches the negative length
      [0.5, 4.5],
      ['0', '4'],
      [-4, 0],
      [0, 4, 8],
    ];
    for (const offsets of cases) {
      const file = image({ w: f32([-1], offsets) }, new Uint8Array(16));
      expect(() => parseSafetensors(file), JSON.stringify(offsets)).toThrow(CheckpointFormatError);
      expect(() => parseSafetensors(file), JSON.stringify(offsets)).toThrow(
        /tensor w has (shape|data_offsets)/,
      );
    }
    for (const offsets of [
      [8, 4],
      [0.5, 4.5],
      [-4, 0],
    ]) {
      const file = image({ w: f32([1], offsets) }, new Uint8Array(16));
      expect(() => parseSafetensors(file), JSON.stringify(offsets)).toThrow(
        /tensor w has data_offsets .* not two non-negative integers \[begin, end\] with begin <= end/,
      );
    }
    const past = image({ w: f32([2], [16, 24]) }, new Uint8Array(16));
    expect(() => parseSafetensors(past)).toThrow(/tensor w spans bytes \[16, 24\) of a 16-byte data area/);
  });

  it('rejects tensors whose bytes overlap', () => {
    const overlap = image(
      {
        a: f32([4], [0, 16]),
        b: f32([2], [24, 32]),
        c: f32([2], [12, 20]),
        empty: f32([0], [4, 4]),
      },
      new Uint8Array(32),
    );
    expect(() => parseSafetensors(overlap, 'o.safetensors')).toThrow(CheckpointFormatError);
    expect(() => parseSafetensors(overlap, 'o.safetensors')).toThrow(
      /o\.safetensors: tensor c \(bytes \[12, 20\)\) overlaps tensor a \(bytes \[0, 16\)\)/,
    );
    const same = image({ a: f32([4], [0, 16]), b: f32([4], [0, 16]) }, new Uint8Array(16));
    expect(() => parseSafetensors(same)).toThrow(/tensor b .* overlaps tensor a/);
    // Adjacent tensors and empty ones anywhere are fine.
    const ok = image(
      { a: f32([4], [0, 16]), b: f32([2], [16, 24]), e: f32([0, 3], [8, 8]) },
      new Uint8Array(24),
    );
    expect([...parseSafetensors(ok).keys()]).toEqual(['a', 'b', 'e']);
  });

  it('rejects a header that is not an object of entries, and unknown dtypes named like Object members', () => {
    for (const header of [null, [], 3, 'x']) {
      expect(() => parseSafetensors(image(header)), JSON.stringify(header)).toThrow(
        /header is not a JSON object/,
      );
    }
    expect(() => parseSafetensors(image({ w: null }))).toThrow(/tensor w has a malformed header entry/);
    expect(() => parseSafetensors(image({ w: [1] }))).toThrow(/tensor w has a malformed header entry/);
    for (const dtype of ['toString', 'constructor', '__proto__']) {
      const file = image({ w: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4));
      expect(() => parseSafetensors(file), dtype).toThrow(`tensor w has unsupported dtype ${dtype}`);
    }
  });

  it('requires __metadata__, when present, to be a map of strings', () => {
    for (const metadata of [{ format: 1 }, 'pt', ['pt'], null, { nested: { a: 'b' } }]) {
      const file = image({ __metadata__: metadata, w: f32([1], [0, 4]) }, new Uint8Array(4));
      expect(() => parseSafetensors(file, 'm.safetensors'), JSON.stringify(metadata)).toThrow(
        /m\.safetensors: __metadata__ is not a map of strings/,
      );
    }
    const ok = image({ __metadata__: { format: 'pt' }, w: f32([1], [0, 4]) }, new Uint8Array(4));
    expect([...parseSafetensors(ok).keys()]).toEqual(['w']);
  });

  it('returns only the tensors kept by a key filter, still validating every entry', () => {
    const file = image({ 'cls.bias': f32([1], [0, 4]), w: f32([2], [4, 12]) }, new Uint8Array(12));
    const seen: string[] = [];
    const tensors = parseSafetensors(file, 'f', {
      keep: (key) => {
        seen.push(key);
        return !key.startsWith('cls.');
      },
    });
    expect([...tensors.keys()]).toEqual(['w']);
    expect(seen).toEqual(['cls.bias', 'w']);
    const bad = image({ 'cls.bias': f32([-1], [0, -4]), w: f32([2], [4, 12]) }, new Uint8Array(12));
    expect(() => parseSafetensors(bad, 'f', { keep: (key) => key === 'w' })).toThrow(/tensor cls\.bias/);
  });
});
