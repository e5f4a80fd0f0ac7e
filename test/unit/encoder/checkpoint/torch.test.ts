import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpointWeights } from '../../../../layers/encoder/src/checkpoint/index.ts';
import {
  parseTorchCheckpoint,
  readTorchCheckpoint,
} from '../../../../layers/encoder/src/checkpoint/torch.ts';
import { CheckpointFormatError } from '../../../../layers/encoder/src/errors.ts';
import {
  randomBertWeights,
  TINY_BERT_CONFIG,
  writeRandomBertCheckpoint,
} from '../../../../layers/encoder/src/fixture.ts';
import {
  floatToHalf,
  halfToFloat,
  type RawTensor,
  toFloat32,
} from '../../../../layers/encoder/src/tensor.ts';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/tiny-bert-torch/', import.meta.url));
const ZIP_BIN = join(FIXTURE, 'torch-zip', 'pytorch_model.bin');
const LEGACY_BIN = join(FIXTURE, 'torch-legacy', 'pytorch_model.bin');

interface ExpectedTensor {
  name: string;
  dtype: string;
  shape: number[];
  stride: number[];
  storage_offset: number;
  contiguous: boolean;
  sum: number;
  sum_sq: number;
}

const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as {
  torch_version: string;
  checkpoints: Record<
    'torch-zip' | 'torch-legacy',
    { file: string; format: string; tensors: ExpectedTensor[] }
  >;
};

// ---------------------------------------------------------------------------------------------
// Helpers: values of a tensor, and hand-built pickles, legacy files and ZIP archives

/** Every element as a float64, whatever the dtype. */
function values(t: RawTensor): Float64Array {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case 'F32':
        out[i] = view.getFloat32(i * 4, true);
        break;
      case 'F16':
        out[i] = halfToFloat(view.getUint16(i * 2, true));
        break;
      case 'F64':
        out[i] = view.getFloat64(i * 8, true);
        break;
      case 'I64':
        out[i] = Number(view.getBigInt64(i * 8, true));
        break;
      case 'I32':
        out[i] = view.getInt32(i * 4, true);
        break;
      default:
        throw new Error(`test helper does not decode ${t.dtype}`);
    }
  }
  return out;
}

function checksums(t: RawTensor): { sum: number; sumSq: number } {
  let sum = 0;
  let sumSq = 0;
  for (const v of values(t)) {
    sum += v;
    sumSq += v * v;
  }
  return { sum, sumSq };
}

function expectMatchesTorch(tensors: Map<string, RawTensor>, want: ExpectedTensor[]): void {
  expect([...tensors.keys()]).toEqual(want.map((t) => t.name));
  for (const w of want) {
    const t = tensors.get(w.name)!;
    expect({ name: w.name, dtype: t.dtype, shape: t.shape }).toEqual({
      name: w.name,
      dtype: w.dtype,
      shape: w.shape,
    });
    const { sum, sumSq } = checksums(t);
    // torch sums pairwise, this test sequentially: equal up to float64 rounding.
    const tolerance = 1e-9 * (1 + w.sum_sq);
    expect(Math.abs(sum - w.sum), `${w.name} sum`).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(sumSq - w.sum_sq), `${w.name} sum of squares`).toBeLessThanOrEqual(tolerance);
  }
}

const bytesOf = (...parts: (number | number[] | Uint8Array)[]): Uint8Array =>
  Buffer.concat(
    parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(typeof p === 'number' ? [p] : p))),
  );
const u32le = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const u64le = (n: number) => [...u32le(n % 2 ** 32), ...u32le(Math.floor(n / 2 ** 32))];
const u16le = (n: number) => [n & 0xff, (n >>> 8) & 0xff];

/** Pickle protocol 2 building blocks, spelled out as torch.save emits them. */
const pk = {
  proto: [0x80, 0x02],
  stop: [0x2e],
  mark: [0x28],
  tuple: [0x74],
  emptyTuple: [0x29],
  reduce: [0x52],
  setitems: [0x75],
  newFalse: [0x89],
  binpersid: [0x51],
  global: (module: string, name: string) => [0x63, ...Buffer.from(`${module}\n${name}\n`, 'latin1')],
  str: (s: string) => {
    const b = Buffer.from(s, 'utf8');
    return [0x58, ...u32le(b.length), ...b];
  },
  int: (n: number) => [0x4a, ...u32le(n)],
  ints: (ns: number[]) => [0x28, ...ns.flatMap((n) => pk.int(n)), 0x74],
};

interface TensorSpec {
  key: string;
  storage?: string;
  numel: number;
  offset: number;
  shape: number[];
  stride: number[];
  /** Legacy view_metadata `(view_key, offset, size)`: the tensor's storage is a window of `key`. */
  view?: [string, number, number];
}

/** `_rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict())`. */
function tensorPickle(spec: TensorSpec): number[] {
  return [
    ...pk.global('torch._utils', '_rebuild_tensor_v2'),
    ...pk.mark,
    ...[...pk.mark, ...pk.str('storage'), ...pk.global('torch', spec.storage ?? 'FloatStorage')],
    ...[...pk.str(spec.key), ...pk.str('cpu'), ...pk.int(spec.numel)],
    ...(spec.view
      ? [...pk.mark, ...pk.str(spec.view[0]), ...pk.int(spec.view[1]), ...pk.int(spec.view[2]), ...pk.tuple]
      : []),
    ...[...pk.tuple, ...pk.binpersid],
    ...pk.int(spec.offset),
    ...pk.ints(spec.shape),
    ...pk.ints(spec.stride),
    ...pk.newFalse,
    ...[...pk.global('collections', 'OrderedDict'), ...pk.emptyTuple, ...pk.reduce],
    ...pk.tuple,
    ...pk.reduce,
  ];
}

/** An OrderedDict state-dict pickle. */
function stateDictPickle(entries: [string, number[]][]): Uint8Array {
  return bytesOf(
    pk.proto,
    pk.global('collections', 'OrderedDict'),
    pk.emptyTuple,
    pk.reduce,
    pk.mark,
    ...entries.flatMap(([name, value]) => [pk.str(name), value]),
    pk.setitems,
    pk.stop,
  );
}

/** The legacy container: magic, protocol version, sys_info, the pickle, the key list, the storages. */
function legacyFile(
  main: Uint8Array,
  storages: [key: string, count: number, bytes: Uint8Array][],
  littleEndian = true,
): Uint8Array {
  const magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]; // 0x1950a86a20f9469cfc6c, LE
  return bytesOf(
    [...pk.proto, 0x8a, 10, ...magic, ...pk.stop],
    [...pk.proto, 0x4d, ...u16le(1001), ...pk.stop],
    [
      ...pk.proto,
      0x7d,
      ...pk.mark,
      ...pk.str('little_endian'),
      littleEndian ? 0x88 : 0x89,
      ...pk.setitems,
      ...pk.stop,
    ],
    main,
    [...pk.proto, 0x5d, ...pk.mark, ...storages.flatMap(([key]) => pk.str(key)), 0x65, ...pk.stop],
    ...storages.flatMap(([, count, bytes]) => [u64le(count), bytes]),
  );
}

/**
 * A ZIP archive. `zip64` stores every size and offset in ZIP64 extra fields and adds the ZIP64 end
 * records, as a writer must for archives over 4 GiB; `deflate` compresses every entry.
 */
function zipArchive(
  entries: [string, Uint8Array][],
  options: {
    deflate?: boolean;
    zip64?: boolean;
    /** Uncompressed sizes to declare instead of the true ones, by entry name. */
    declaredSize?: Record<string, number>;
    /** Write 0 for every CRC-32, as a writer that skips checksums does (so corruption goes unseen). */
    noCrc?: boolean;
  } = {},
): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const method = options.deflate ? 8 : 0;
  const sat = (n: number) => (options.zip64 ? 0xffffffff : n);
  for (const [name, data] of entries) {
    const body = options.deflate ? deflateRawSync(data) : data;
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = options.noCrc ? 0 : crc32(data) >>> 0;
    // The uncompressed size the headers declare; a test may make it lie.
    const size = options.declaredSize?.[name] ?? data.length;
    const localExtra = options.zip64
      ? bytesOf(u16le(1), u16le(16), u64le(size), u64le(body.length))
      : bytesOf();
    const local = bytesOf(
      u32le(0x04034b50),
      u16le(45),
      u16le(0x800),
      u16le(method),
      u32le(0),
      u32le(crc),
      u32le(sat(body.length)),
      u32le(sat(size)),
      u16le(nameBytes.length),
      u16le(localExtra.length),
      nameBytes,
      localExtra,
    );
    const centralExtra = options.zip64
      ? bytesOf(u16le(1), u16le(24), u64le(size), u64le(body.length), u64le(offset))
      : bytesOf();
    central.push(
      bytesOf(
        u32le(0x02014b50),
        u16le(45),
        u16le(45),
        u16le(0x800),
        u16le(method),
        u32le(0),
        u32le(crc),
        u32le(sat(body.length)),
        u32le(sat(size)),
        u16le(nameBytes.length),
        u16le(centralExtra.length),
        u16le(0),
        u16le(0),
        u16le(0),
        u32le(0),
        u32le(sat(offset)),
        nameBytes,
        centralExtra,
      ),
    );
    parts.push(local, body);
    offset += local.length + body.length;
  }
  const directory = bytesOf(...central);
  const tail: Uint8Array[] = [];
  if (options.zip64) {
    const record = offset + directory.length;
    tail.push(
      bytesOf(
        u32le(0x06064b50),
        u64le(44),
        u16le(45),
        u16le(45),
        u32le(0),
        u32le(0),
        u64le(entries.length),
        u64le(entries.length),
        u64le(directory.length),
        u64le(offset),
      ),
      bytesOf(u32le(0x07064b50), u32le(0), u64le(record), u32le(1)),
    );
  }
  const count = options.zip64 ? 0xffff : entries.length;
  tail.push(
    bytesOf(
      u32le(0x06054b50),
      u16le(0),
      u16le(0),
      u16le(count),
      u16le(count),
      u32le(sat(directory.length)),
      u32le(sat(offset)),
      u16le(0),
    ),
  );
  return bytesOf(...parts, directory, ...tail);
}

/** The entries of a small, stored ZIP (the torch fixture), read with no code from the reader under test. */
function storedZipEntries(file: Uint8Array): [string, Uint8Array][] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const eocd = file.length - 22;
  expect(view.getUint32(eocd, true)).toBe(0x06054b50);
  const count = view.getUint16(eocd + 10, true);
  let at = view.getUint32(eocd + 16, true);
  const out: [string, Uint8Array][] = [];
  for (let i = 0; i < count; i++) {
    const nameLength = view.getUint16(at + 28, true);
    const name = Buffer.from(file.subarray(at + 46, at + 46 + nameLength)).toString('utf8');
    expect(view.getUint16(at + 10, true)).toBe(0);
    const size = view.getUint32(at + 20, true);
    const local = view.getUint32(at + 42, true);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    out.push([name, file.subarray(start, start + size)]);
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
  }
  return out;
}

const f32Bytes = (data: number[]) => new Uint8Array(Float32Array.from(data).buffer);

// ---------------------------------------------------------------------------------------------

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'torch-checkpoint-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('readTorchCheckpoint on files written by torch.save', () => {
  const source = randomBertWeights(TINY_BERT_CONFIG);

  it(`has a fixture written by torch (${expected.torch_version})`, () => {
    expect(expected.torch_version).toMatch(/^\d+\.\d+/);
    expect(expected.checkpoints['torch-zip'].tensors.length).toBe(source.size + 2);
    expect(expected.checkpoints['torch-legacy'].tensors.length).toBe(source.size + 1);
  });

  it('reads a zip-format checkpoint written by torch.save', async () => {
    const tensors = await readTorchCheckpoint(ZIP_BIN);
    expectMatchesTorch(tensors, expected.checkpoints['torch-zip'].tensors);
  });

  it('reads a legacy (pre-1.6) checkpoint', async () => {
    const tensors = await readTorchCheckpoint(LEGACY_BIN);
    expectMatchesTorch(tensors, expected.checkpoints['torch-legacy'].tensors);
  });

  it('reports which container it read', async () => {
    expect(parseTorchCheckpoint(await readFile(ZIP_BIN)).format).toBe('torch-zip');
    expect(parseTorchCheckpoint(await readFile(LEGACY_BIN)).format).toBe('torch-legacy');
  });

  it('reads the same values as the safetensors source (zip: BertForPreTraining keys with bert. prefix)', async () => {
    const tensors = await readTorchCheckpoint(ZIP_BIN);
    for (const [name, want] of source) {
      const got = tensors.get(`bert.${name}`);
      expect(got, name).toBeDefined();
      expect(got!.dtype).toBe('F32');
      expect(got!.shape).toEqual(want.shape);
      expect(Buffer.from(got!.bytes).equals(Buffer.from(want.bytes)), name).toBe(true);
    }
    expect(tensors.get('cls.predictions.bias')!.shape).toEqual([TINY_BERT_CONFIG.vocab_size]);
  });

  it('reads the same values as the safetensors source (legacy: unprefixed keys)', async () => {
    const tensors = await readTorchCheckpoint(LEGACY_BIN);
    for (const [name, want] of source) {
      const got = tensors.get(name)!;
      expect(got.shape, name).toEqual(want.shape);
      if (name === 'pooler.dense.bias') continue; // stored as float16, checked below
      expect(got.dtype).toBe('F32');
      expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), name).toBe(true);
    }
  });

  it('widens float16 tensors', async () => {
    const got = (await readTorchCheckpoint(LEGACY_BIN)).get('pooler.dense.bias')!;
    expect(got.dtype).toBe('F16');
    const want = toFloat32('pooler.dense.bias', source.get('pooler.dense.bias')!);
    const widened = toFloat32('pooler.dense.bias', got);
    expect(Array.from(widened)).toEqual(Array.from(want, (v) => halfToFloat(floatToHalf(v))));
  });

  it('reads an int64 buffer (embeddings.position_ids)', async () => {
    const got = (await readTorchCheckpoint(LEGACY_BIN)).get('embeddings.position_ids')!;
    expect(got.dtype).toBe('I64');
    expect(got.shape).toEqual([1, TINY_BERT_CONFIG.max_position_embeddings]);
    expect(Array.from(values(got))).toEqual(Array.from({ length: 512 }, (_, i) => i));
  });

  it('materializes non-contiguous views in row-major order', async () => {
    const name = 'embeddings.token_type_embeddings.weight';
    const meta = expected.checkpoints['torch-legacy'].tensors.find((t) => t.name === name)!;
    expect(meta.contiguous).toBe(false);
    expect(meta.stride).toEqual([1, 2]);
    const got = (await readTorchCheckpoint(LEGACY_BIN)).get(name)!;
    expect(got.shape).toEqual([2, 32]);
    expect(Buffer.from(got.bytes).equals(Buffer.from(source.get(name)!.bytes))).toBe(true);
  });

  it('reads views into a shared storage (storage offset, tied weights)', async () => {
    const file = await readFile(LEGACY_BIN);
    const legacy = parseTorchCheckpoint(file).tensors;
    const weight = legacy.get('embeddings.LayerNorm.weight')!;
    const bias = legacy.get('embeddings.LayerNorm.bias')!;
    const meta = expected.checkpoints['torch-legacy'].tensors.find(
      (t) => t.name === 'embeddings.LayerNorm.bias',
    );
    expect(meta!.storage_offset).toBe(32);
    expect(bias.bytes.buffer).toBe(weight.bytes.buffer);
    expect(bias.bytes.byteOffset).toBe(weight.bytes.byteOffset + 32 * 4);
    expect(Array.from(values(bias))).toEqual(Array.from(values(source.get('embeddings.LayerNorm.bias')!)));

    const zip = await readTorchCheckpoint(ZIP_BIN);
    const decoder = zip.get('cls.predictions.decoder.weight')!;
    const embeddings = zip.get('bert.embeddings.word_embeddings.weight')!;
    expect(decoder.bytes.byteOffset).toBe(embeddings.bytes.byteOffset);
    expect(decoder.bytes.byteLength).toBe(embeddings.bytes.byteLength);
  });

  it('returns contiguous tensors as views into the file, without copying', async () => {
    for (const path of [ZIP_BIN, LEGACY_BIN]) {
      const file = await readFile(path);
      const { tensors } = parseTorchCheckpoint(file, path);
      for (const [name, t] of tensors) {
        if (name === 'embeddings.token_type_embeddings.weight') continue; // the one transposed view
        expect(t.bytes.buffer, `${path} ${name}`).toBe(file.buffer);
      }
    }
  });

  it('reads deflate-compressed and ZIP64 archives', async () => {
    const direct = await readTorchCheckpoint(ZIP_BIN);
    const entries = storedZipEntries(await readFile(ZIP_BIN));
    expect(entries.map(([name]) => name)).toContain('pytorch_model/data.pkl');
    for (const options of [{ deflate: true }, { zip64: true }, { deflate: true, zip64: true }]) {
      const { format, tensors } = parseTorchCheckpoint(zipArchive(entries, options), JSON.stringify(options));
      expect(format).toBe('torch-zip');
      expect([...tensors.keys()]).toEqual([...direct.keys()]);
      for (const [name, t] of direct) {
        expect(Buffer.from(tensors.get(name)!.bytes).equals(Buffer.from(t.bytes)), name).toBe(true);
      }
    }
  });
});

describe('readTorchCheckpoint on crafted files', () => {
  // One storage of 24 float32 values 0..23 (a contiguous [2, 3, 4] tensor), viewed several ways.
  const storage = f32Bytes(Array.from({ length: 24 }, (_, i) => i));
  const crafted = (
    specs: [string, Omit<TensorSpec, 'key' | 'numel'>][],
    extra: [string, Uint8Array][] = [],
  ) =>
    zipArchive([
      [
        'archive/data.pkl',
        stateDictPickle(specs.map(([name, s]) => [name, tensorPickle({ key: '0', numel: 24, ...s })])),
      ],
      ['archive/data/0', storage],
      ['archive/version', Buffer.from('3\n')],
      ...extra,
    ]);

  it('materializes permuted, offset and broadcast (stride 0) views of one storage', () => {
    const { tensors } = parseTorchCheckpoint(
      crafted([
        ['permuted', { offset: 0, shape: [4, 2, 3], stride: [1, 12, 4] }],
        ['window', { offset: 5, shape: [2, 2], stride: [4, 1] }],
        ['broadcast', { offset: 1, shape: [3, 2], stride: [0, 1] }],
        ['scalar', { offset: 23, shape: [], stride: [] }],
        ['empty', { offset: 0, shape: [0, 4], stride: [4, 1] }],
      ]),
    );
    const permuted: number[] = [];
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 2; j++) for (let k = 0; k < 3; k++) permuted.push(j * 12 + k * 4 + i);
    expect(Array.from(values(tensors.get('permuted')!))).toEqual(permuted);
    expect(Array.from(values(tensors.get('window')!))).toEqual([5, 6, 9, 10]);
    expect(Array.from(values(tensors.get('broadcast')!))).toEqual([1, 2, 1, 2, 1, 2]);
    expect(tensors.get('scalar')!.shape).toEqual([]);
    expect(Array.from(values(tensors.get('scalar')!))).toEqual([23]);
    expect(tensors.get('empty')!.bytes.byteLength).toBe(0);
  });

  it('reads a legacy file with a storage shared by two tensors', () => {
    const main = stateDictPickle([
      ['a', tensorPickle({ key: '140', numel: 24, offset: 0, shape: [2, 3, 4], stride: [12, 4, 1] })],
      ['b', tensorPickle({ key: '140', numel: 24, offset: 20, shape: [4], stride: [1] })],
    ]);
    const { format, tensors } = parseTorchCheckpoint(legacyFile(main, [['140', 24, storage]]));
    expect(format).toBe('torch-legacy');
    expect(Array.from(values(tensors.get('a')!))).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(Array.from(values(tensors.get('b')!))).toEqual([20, 21, 22, 23]);
  });

  it('reads legacy storage views (view_metadata) and parameters saved as nn.Parameter', () => {
    const parameter = (tensor: number[]) => [
      ...pk.global('torch._utils', '_rebuild_parameter'),
      ...pk.mark,
      ...tensor,
      0x88,
      ...[...pk.global('collections', 'OrderedDict'), ...pk.emptyTuple, ...pk.reduce],
      ...pk.tuple,
      ...pk.reduce,
    ];
    const main = stateDictPickle([
      // Elements 8..15 of storage 140 as their own storage, then a [2, 2] tensor at offset 2 in it.
      [
        'view',
        tensorPickle({
          key: '140',
          numel: 24,
          view: ['141', 8, 8],
          offset: 2,
          shape: [2, 2],
          stride: [2, 1],
        }),
      ],
      ['param', parameter(tensorPickle({ key: '140', numel: 24, offset: 0, shape: [3], stride: [1] }))],
    ]);
    const { tensors } = parseTorchCheckpoint(legacyFile(main, [['140', 24, storage]]));
    expect(Array.from(values(tensors.get('view')!))).toEqual([10, 11, 12, 13]);
    expect(Array.from(values(tensors.get('param')!))).toEqual([0, 1, 2]);
  });

  it('reads float64, int32 and bfloat16 storages', () => {
    const f64 = new Uint8Array(Float64Array.from([1.5, -2.25]).buffer);
    const i32 = new Uint8Array(Int32Array.from([7, -8]).buffer);
    const bf16 = Uint8Array.from([0x80, 0x3f, 0x00, 0xc0]); // 1.0, -2.0
    const main = stateDictPickle([
      [
        'd',
        tensorPickle({ key: '1', storage: 'DoubleStorage', numel: 2, offset: 0, shape: [2], stride: [1] }),
      ],
      ['i', tensorPickle({ key: '2', storage: 'IntStorage', numel: 2, offset: 0, shape: [2], stride: [1] })],
      [
        'h',
        tensorPickle({ key: '3', storage: 'BFloat16Storage', numel: 2, offset: 0, shape: [2], stride: [1] }),
      ],
    ]);
    const { tensors } = parseTorchCheckpoint(
      legacyFile(main, [
        ['1', 2, f64],
        ['2', 2, i32],
        ['3', 2, bf16],
      ]),
    );
    expect(tensors.get('d')!.dtype).toBe('F64');
    expect(Array.from(values(tensors.get('d')!))).toEqual([1.5, -2.25]);
    expect(tensors.get('i')!.dtype).toBe('I32');
    expect(Array.from(values(tensors.get('i')!))).toEqual([7, -8]);
    expect(tensors.get('h')!.dtype).toBe('BF16');
    expect(Array.from(toFloat32('h', tensors.get('h')!))).toEqual([1, -2]);
  });

  it('reports an unknown GLOBAL (os.system) with CheckpointFormatError and never calls it', () => {
    const evil = bytesOf(
      pk.proto,
      pk.global('os', 'system'),
      pk.str('touch /tmp/pwned'),
      0x85,
      pk.reduce,
      pk.stop,
    );
    const legacy = legacyFile(evil, []);
    expect(() => parseTorchCheckpoint(legacy)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(legacy)).toThrow(/GLOBAL os\.system is not on the allowlist/);

    // The same through STACK_GLOBAL (protocol 4) inside a zip checkpoint.
    const stackGlobal = bytesOf(
      [0x80, 0x04],
      [0x8c, 8, ...Buffer.from('builtins')],
      [0x8c, 4, ...Buffer.from('exec')],
      0x93,
      pk.str('print(1)'),
      0x85,
      pk.reduce,
      pk.stop,
    );
    const zip = zipArchive([['archive/data.pkl', stackGlobal]]);
    expect(() => parseTorchCheckpoint(zip)).toThrow(/GLOBAL builtins\.exec is not on the allowlist/);
  });

  it('reports an unsupported storage type or opcode', () => {
    const complex = stateDictPickle([
      [
        'c',
        tensorPickle({
          key: '0',
          storage: 'ComplexFloatStorage',
          numel: 1,
          offset: 0,
          shape: [1],
          stride: [1],
        }),
      ],
    ]);
    expect(() => parseTorchCheckpoint(legacyFile(complex, []))).toThrow(
      /ComplexFloatStorage is not on the allowlist/,
    );
    const ext = bytesOf(pk.proto, [0x82, 1], pk.stop); // EXT1: the copyreg extension registry
    expect(() => parseTorchCheckpoint(legacyFile(ext, []))).toThrow(/opcode 0x82 is not supported/);
  });

  it('reports a tensor that overruns its storage', () => {
    const archive = crafted([['too long', { offset: 20, shape: [5], stride: [1] }]]);
    expect(() => parseTorchCheckpoint(archive)).toThrow(
      /tensor too long .* overruns its storage of 24 elements/,
    );
  });

  it('refuses big-endian checkpoints', () => {
    const archive = crafted(
      [['x', { offset: 0, shape: [24], stride: [1] }]],
      [['archive/byteorder', Buffer.from('big')]],
    );
    expect(() => parseTorchCheckpoint(archive)).toThrow(/byteorder "big"/);
    const main = stateDictPickle([
      ['x', tensorPickle({ key: '0', numel: 24, offset: 0, shape: [24], stride: [1] })],
    ]);
    expect(() => parseTorchCheckpoint(legacyFile(main, [['0', 24, storage]], false))).toThrow(/big-endian/);
    // An explicit "little" is fine.
    const little = crafted(
      [['x', { offset: 0, shape: [24], stride: [1] }]],
      [['archive/byteorder', Buffer.from('little')]],
    );
    expect(parseTorchCheckpoint(little).tensors.get('x')!.shape).toEqual([24]);
  });

  it('reports a missing storage entry and a corrupt (CRC mismatch) entry', () => {
    const missing = zipArchive([
      [
        'archive/data.pkl',
        stateDictPickle([['x', tensorPickle({ key: '9', numel: 1, offset: 0, shape: [1], stride: [1] })]]),
      ],
    ]);
    expect(() => parseTorchCheckpoint(missing)).toThrow(/storage entry archive\/data\/9 is missing/);

    const archive = crafted([['x', { offset: 0, shape: [24], stride: [1] }]]);
    const at = Buffer.from(archive).indexOf(Buffer.from(storage.subarray(0, 16)));
    const corrupt = archive.slice();
    corrupt[at + 10]! ^= 0xff;
    expect(() => parseTorchCheckpoint(corrupt)).toThrow(/CRC-32 mismatch/);
  });

  it('rejects files that are not torch checkpoints', () => {
    expect(() => parseTorchCheckpoint(new Uint8Array(0))).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(Buffer.from('{"__metadata__":{}}'))).toThrow(/not a torch checkpoint/);
    // A pickle that is not a torch checkpoint (no magic number).
    expect(() => parseTorchCheckpoint(bytesOf(pk.proto, pk.int(5), pk.stop))).toThrow(
      /no torch magic number/,
    );
    // A ZIP without data.pkl.
    expect(() => parseTorchCheckpoint(zipArchive([['notes.txt', Buffer.from('hi')]]))).toThrow(/data\.pkl/);
  });

  it('reports a state dict holding something other than tensors', () => {
    const main = bytesOf(pk.proto, 0x7d, pk.mark, pk.str('epoch'), pk.int(3), pk.setitems, pk.stop);
    expect(() => parseTorchCheckpoint(legacyFile(main, []))).toThrow(
      /entry epoch is a number, a tensor expected/,
    );
  });

  it('reads a state dict nested under "state_dict", as training scripts save it', () => {
    const inner = tensorPickle({ key: '0', numel: 24, offset: 0, shape: [24], stride: [1] });
    const main = bytesOf(
      pk.proto,
      0x7d,
      pk.mark,
      pk.str('epoch'),
      pk.int(3),
      pk.str('state_dict'),
      [...pk.global('collections', 'OrderedDict'), ...pk.emptyTuple, ...pk.reduce],
      pk.mark,
      pk.str('w'),
      inner,
      pk.setitems,
      pk.setitems,
      pk.stop,
    );
    const { tensors } = parseTorchCheckpoint(legacyFile(main, [['0', 24, storage]]));
    expect([...tensors.keys()]).toEqual(['w']);
  });
});

describe('readTorchCheckpoint on truncated files', () => {
  for (const [label, path] of [
    ['zip', ZIP_BIN],
    ['legacy', LEGACY_BIN],
  ] as const) {
    it(`reports a truncated ${label} file with CheckpointFormatError`, async () => {
      const whole = await readFile(path);
      for (const keep of [0.5, 0.99, 100 / whole.length, 1 - 8 / whole.length]) {
        const cut = join(tmp, `${label}-${keep}.bin`);
        await writeFile(cut, whole.subarray(0, Math.floor(whole.length * keep)));
        await expect(readTorchCheckpoint(cut), `${label} cut to ${keep}`).rejects.toThrow(
          CheckpointFormatError,
        );
      }
    });
  }

  it('names the file and says it may be truncated', async () => {
    const whole = await readFile(LEGACY_BIN);
    const cut = join(tmp, 'legacy-half.bin');
    await writeFile(cut, whole.subarray(0, whole.length >> 1));
    await expect(readTorchCheckpoint(cut)).rejects.toThrow(
      new RegExp(`${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*truncated`),
    );
    const zipCut = join(tmp, 'zip-half.bin');
    await writeFile(zipCut, (await readFile(ZIP_BIN)).subarray(0, 1 << 20));
    await expect(readTorchCheckpoint(zipCut)).rejects.toThrow(
      /end-of-central-directory record \(truncated\?\)/,
    );
  });
});

describe('readCheckpointWeights', () => {
  it('reads pytorch_model.bin in either container when there is no model.safetensors', async () => {
    for (const [dir, format] of [
      ['torch-zip', 'torch-zip'],
      ['torch-legacy', 'torch-legacy'],
    ] as const) {
      const weights = await readCheckpointWeights(join(FIXTURE, dir));
      expect(weights.format).toBe(format);
      expect(weights.file).toBe(join(FIXTURE, dir, 'pytorch_model.bin'));
      expect(weights.tensors.size).toBe(expected.checkpoints[format].tensors.length);
    }
  });

  it('prefers model.safetensors over pytorch_model.bin', async () => {
    const dir = join(tmp, 'both');
    await writeRandomBertCheckpoint(dir);
    await copyFile(ZIP_BIN, join(dir, 'pytorch_model.bin'));
    const weights = await readCheckpointWeights(dir);
    expect(weights.format).toBe('safetensors');
    expect(weights.file).toBe(join(dir, 'model.safetensors'));
    expect(weights.tensors.has('embeddings.word_embeddings.weight')).toBe(true);
  });

  it('lists what it looked for when there is no weights file', async () => {
    const dir = join(tmp, 'empty');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'config.json'), '{}');
    await writeFile(join(dir, 'tf_model.h5'), '');
    const attempt = readCheckpointWeights(dir);
    await expect(attempt).rejects.toThrow(CheckpointFormatError);
    await expect(attempt).rejects.toThrow(
      /looked for model\.safetensors and pytorch_model\.bin.*config\.json, tf_model\.h5/,
    );
    await expect(readCheckpointWeights(join(tmp, 'no-such-dir'))).rejects.toThrow(CheckpointFormatError);
  });

  it('reports sharded checkpoints as not supported', async () => {
    const dir = join(tmp, 'sharded');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'pytorch_model.bin.index.json'), '{"weight_map":{}}');
    await writeFile(join(dir, 'pytorch_model-00001-of-00002.bin'), '');
    await expect(readCheckpointWeights(dir)).rejects.toThrow(
      /sharded checkpoints \(pytorch_model\.bin\.index\.json\) are not supported/,
    );
  });
});

describe('readTorchCheckpoint on hostile files', () => {
  const storage24 = f32Bytes(Array.from({ length: 24 }, (_, i) => i));
  /** A stored ZIP checkpoint: one storage `0` of `numel` float32 values and the given tensors. */
  const archiveOf = (
    numel: number,
    tensors: [string, Omit<TensorSpec, 'key' | 'numel'>][],
    options: Parameters<typeof zipArchive>[1] = {},
    data: Uint8Array = new Uint8Array(numel * 4),
  ) =>
    zipArchive(
      [
        [
          'archive/data.pkl',
          stateDictPickle(tensors.map(([name, s]) => [name, tensorPickle({ key: '0', numel, ...s })])),
        ],
        ['archive/data/0', data],
      ],
      options,
    );
  /** A legacy file whose state-dict pickle is `body` (opcodes after PROTO, before STOP). */
  const legacyPickle = (...body: (number | number[] | Uint8Array)[]) =>
    legacyFile(bytesOf(pk.proto, ...body, pk.stop), []);
  const EMPTY_LIST = 0x5d;
  const DUP = 0x32;
  const APPEND = 0x61;
  const NONE = 0x4e;
  const TUPLE1 = 0x85;

  it('refuses a broadcast (stride 0) view larger than its storage instead of allocating it', () => {
    // 425 bytes that used to materialize as a 512 MB tensor.
    const broadcast = archiveOf(1, [['big', { offset: 0, shape: [2 ** 27], stride: [0] }]]);
    expect(broadcast.byteLength).toBeLessThan(1024);
    expect(() => parseTorchCheckpoint(broadcast, 'bomb.bin')).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(broadcast, 'bomb.bin')).toThrow(
      /bomb\.bin: tensor big \[134217728\] .* more elements than its storage holds \(1\)/,
    );
    // 2^40 elements: used to throw a RangeError from the allocation.
    const huge = archiveOf(1, [['huge', { offset: 0, shape: [2 ** 20, 2 ** 20], stride: [0, 0] }]]);
    expect(() => parseTorchCheckpoint(huge)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(huge)).toThrow(/tensor huge .* more elements than its storage/);
    // Strides that step far past the storage are refused whatever the shape.
    const far = archiveOf(24, [['far', { offset: 0, shape: [2, 2], stride: [2 ** 30, 1] }]]);
    expect(() => parseTorchCheckpoint(far)).toThrow(/tensor far .* overruns its storage of 24 elements/);
  });

  it('bounds the bytes copied for non-contiguous tensors by the size of the storages', () => {
    // Each tensor is a broadcast view as large as the whole storage; together they would copy it 8 times.
    const numel = 2 ** 14;
    const views = Array.from({ length: 8 }, (_, i): [string, Omit<TensorSpec, 'key' | 'numel'>] => [
      `copy${i}`,
      { offset: 0, shape: [2, numel / 2], stride: [0, 1] },
    ]);
    const archive = archiveOf(numel, views);
    expect(() => parseTorchCheckpoint(archive, 'amplify.bin')).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(archive, 'amplify.bin')).toThrow(
      /amplify\.bin: tensor copy2 .* non-contiguous tensors would copy more than/,
    );
    // Two copies of the storage are fine (a transposed tie of one weight).
    expect(parseTorchCheckpoint(archiveOf(numel, views.slice(0, 2))).tensors.size).toBe(2);
  });

  it('inflates no more than a deflated entry declares', () => {
    const tensor: [string, Omit<TensorSpec, 'key' | 'numel'>][] = [
      ['x', { offset: 0, shape: [24], stride: [1] }],
    ];
    // The entry says 96 bytes but inflates to 1 MiB.
    const lying = archiveOf(
      24,
      tensor,
      { deflate: true, declaredSize: { 'archive/data/0': 96 } },
      new Uint8Array(1 << 20),
    );
    expect(() => parseTorchCheckpoint(lying)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(lying)).toThrow(
      /ZIP entry archive\/data\/0: inflates to more than the 96 bytes its directory entry declares/,
    );
    // A declared size no deflate stream of that length can produce is refused before inflating.
    const absurd = archiveOf(24, tensor, { deflate: true, declaredSize: { 'archive/data/0': 2 ** 31 } });
    expect(() => parseTorchCheckpoint(absurd)).toThrow(
      /ZIP entry archive\/data\/0: declares 2147483648 bytes from \d+ compressed bytes/,
    );
  });

  it('refuses an archive that would inflate far beyond its own size (ZIP bomb)', () => {
    const bomb = archiveOf(
      24,
      [['x', { offset: 0, shape: [24], stride: [1] }]],
      { deflate: true },
      new Uint8Array(80 << 20),
    );
    expect(bomb.byteLength).toBeLessThan(200_000);
    expect(() => parseTorchCheckpoint(bomb, 'bomb.zip')).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(bomb, 'bomb.zip')).toThrow(
      /bomb\.zip: ZIP entry archive\/data\/0: .*ZIP bomb/,
    );
  });

  it('reports a self-referencing list with CheckpointFormatError, not a stack overflow', () => {
    // l = []; l.append(l); persistent_load(l)
    const file = legacyPickle(EMPTY_LIST, DUP, APPEND, pk.binpersid);
    expect(() => parseTorchCheckpoint(file)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(file)).toThrow(/persistent id .* is not a storage reference/);
  });

  it('reports deeply nested tuples with CheckpointFormatError, not a stack overflow', () => {
    const file = legacyPickle(NONE, new Array<number>(200_000).fill(TUPLE1), pk.binpersid);
    expect(() => parseTorchCheckpoint(file)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(file)).toThrow(/persistent id .* is not a storage reference/);
  });

  it('refuses _rebuild_from_type_v2 calling itself', () => {
    // args = [_rebuild_from_type_v2, None, args]; _rebuild_from_type_v2(*args)
    const rebuild = pk.global('torch._tensor', '_rebuild_from_type_v2');
    const file = legacyPickle(
      rebuild,
      [EMPTY_LIST, ...rebuild, APPEND, NONE, APPEND, DUP, APPEND],
      pk.reduce,
    );
    expect(() => parseTorchCheckpoint(file)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(file)).toThrow(
      /_rebuild_from_type_v2 without a known rebuild function/,
    );
  });

  it('resolves long chains of legacy storage views without recursion', () => {
    // Storage "0" of 24 elements; "v1" is a view of "0", "v2" a view of "v1", … each of all 24 elements.
    const depth = 50_000;
    const pid = (key: string, view: string) => [
      ...pk.mark,
      ...pk.str('storage'),
      ...pk.global('torch', 'FloatStorage'),
      ...pk.str(key),
      ...pk.str('cpu'),
      ...pk.int(24),
      ...[...pk.mark, ...pk.str(view), ...pk.int(0), ...pk.int(24), ...pk.tuple],
      ...pk.tuple,
      ...pk.binpersid,
      0x30, // POP
    ];
    const chain = Array.from({ length: depth }, (_, i) => pid(i === 0 ? '0' : `v${i}`, `v${i + 1}`)).flat();
    const main = bytesOf(
      pk.proto,
      chain,
      stateDictPickle([
        [
          'x',
          tensorPickle({
            key: `v${depth - 1}`,
            numel: 24,
            view: [`v${depth}`, 0, 24],
            offset: 0,
            shape: [24],
            stride: [1],
          }),
        ],
      ]).subarray(2),
    );
    const { tensors } = parseTorchCheckpoint(legacyFile(main, [['0', 24, storage24]]));
    expect(Array.from(values(tensors.get('x')!))).toEqual(Array.from({ length: 24 }, (_, i) => i));
  });

  it('caps the pickle stack, MARK nesting and memo', () => {
    const marks = legacyPickle(new Array<number>(100_000).fill(0x28));
    expect(() => parseTorchCheckpoint(marks)).toThrow(/MARKs nested deeper than/);
    const stack = legacyPickle(NONE, new Array<number>(1 << 21).fill(DUP));
    expect(() => parseTorchCheckpoint(stack)).toThrow(/stack grows past/);
    // LONG_BINPUT 2^31: refused as an index, before anything is stored.
    const memo = legacyPickle(NONE, [0x72, ...u32le(2 ** 31)]);
    expect(() => parseTorchCheckpoint(memo)).toThrow(/memo index 2147483648 is out of range/);
    const put = legacyPickle(NONE, [0x70, ...Buffer.from('x\n')]);
    expect(() => parseTorchCheckpoint(put)).toThrow(/memo index "x" is out of range/);
  });

  it('reports a central directory entry whose name runs past the directory', () => {
    const archive = archiveOf(24, [['x', { offset: 0, shape: [24], stride: [1] }]], { zip64: true });
    const central = Buffer.from(archive).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const file = archive.slice();
    file[central + 29] = 0xff; // name length 0xff00 + its real length
    expect(() => parseTorchCheckpoint(file)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(file)).toThrow(/ZIP central directory entry 0 runs past the directory/);
  });

  it('refuses a pickle whose calls copy one large memoized value over and over', () => {
    const [BINPUT, BINGET, POP, TUPLE2] = [0x71, 0x68, 0x30, 0x86];
    // items = [(0, None), …, (1999, None)]; then OrderedDict(items) 5000 times: 10M entries from 45 KB.
    const items = [
      EMPTY_LIST,
      BINPUT,
      0,
      ...Array.from({ length: 2000 }, (_, k) => [...pk.int(k), NONE, TUPLE2, APPEND]).flat(),
    ];
    const dicts = legacyPickle(
      items,
      [TUPLE1, BINPUT, 1, POP],
      [...pk.global('collections', 'OrderedDict'), BINPUT, 2, POP],
      new Array(5000).fill([BINGET, 2, BINGET, 1, ...pk.reduce, POP]).flat(),
      0x7d,
    );
    expect(dicts.byteLength).toBeLessThan(50_000);
    expect(() => parseTorchCheckpoint(dicts)).toThrow(CheckpointFormatError);
    expect(() => parseTorchCheckpoint(dicts)).toThrow(
      /OrderedDict items: the pickle's calls copy more than \d+ elements/,
    );
    // The same with bytes: _codecs.encode of one 100 kB string, 1000 times.
    const strings = legacyPickle(
      [...pk.str('x'.repeat(100_000)), BINPUT, 0, POP],
      [...pk.global('_codecs', 'encode'), BINPUT, 1, POP],
      new Array(1000).fill([BINGET, 1, BINGET, 0, ...pk.str('latin1'), TUPLE2, ...pk.reduce, POP]).flat(),
      0x7d,
    );
    expect(() => parseTorchCheckpoint(strings)).toThrow(/_codecs\.encode: the pickle's calls copy more than/);
    // A tensor rank beyond torch's 64 dimensions.
    const rank = archiveOf(24, [
      ['r', { offset: 0, shape: new Array(65).fill(1), stride: new Array(65).fill(1) }],
    ]);
    expect(() => parseTorchCheckpoint(rank)).toThrow(/tensor size has 65 dimensions, over torch's 64/);
  });

  it('raises only CheckpointFormatError on corrupted files', () => {
    // A deterministic generator (xorshift32), so that a failure reproduces.
    let seed = 0x9e3779b9;
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const main = stateDictPickle([
      ['a', tensorPickle({ key: '140', numel: 24, offset: 0, shape: [2, 3, 4], stride: [12, 4, 1] })],
      [
        'b',
        tensorPickle({
          key: '140',
          numel: 24,
          view: ['141', 4, 8],
          offset: 2,
          shape: [2, 2],
          stride: [1, 2],
        }),
      ],
    ]);
    const seeds = [
      legacyFile(main, [['140', 24, storage24]]),
      archiveOf(24, [['x', { offset: 0, shape: [4, 6], stride: [1, 4] }]]),
      archiveOf(24, [['x', { offset: 0, shape: [4, 6], stride: [1, 4] }]], { zip64: true, deflate: true }),
      archiveOf(24, [['x', { offset: 0, shape: [4, 6], stride: [1, 4] }]], { noCrc: true }),
      archiveOf(24, [['x', { offset: 0, shape: [4, 6], stride: [1, 4] }]], { noCrc: true, deflate: true }),
    ];
    const trials = Number(process.env.CHECKPOINT_FUZZ_TRIALS ?? 1000);
    for (const original of seeds) {
      for (let trial = 0; trial < trials; trial++) {
        const file = original.slice();
        const flips = 1 + Math.floor(random() * 4);
        for (let f = 0; f < flips; f++) {
          const at = Math.floor(random() * file.length);
          file[at] =
            random() < 0.5 ? Math.floor(random() * 256) : file[at]! ^ (1 << Math.floor(random() * 8));
        }
        try {
          parseTorchCheckpoint(file);
        } catch (error) {
          if (!(error instanceof CheckpointFormatError)) {
            throw new Error(`trial ${trial}: ${String(error)} for ${Buffer.from(file).toString('hex')}`);
          }
        }
      }
      for (let length = 0; length < original.length; length++) {
        expect(() => parseTorchCheckpoint(original.subarray(0, length))).toThrow(CheckpointFormatError);
      }
    }
  });
});

describe('readTorchCheckpoint with a key filter', () => {
  const notHeads = (key: string) => !key.startsWith('cls.');

  it('returns only the tensors kept, in order', async () => {
    const all = await readTorchCheckpoint(ZIP_BIN);
    const kept = await readTorchCheckpoint(ZIP_BIN, { keep: notHeads });
    expect([...kept.keys()]).toEqual([...all.keys()].filter(notHeads));
    expect([...kept.keys()].length).toBeLessThan(all.size);
    const { format, tensors } = parseTorchCheckpoint(await readFile(LEGACY_BIN), LEGACY_BIN, {
      keep: (key) => key.startsWith('embeddings.'),
    });
    expect(format).toBe('torch-legacy');
    expect([...tensors.keys()].every((k) => k.startsWith('embeddings.'))).toBe(true);
    expect(tensors.size).toBeGreaterThan(0);
  });

  it('does not materialize, bounds-check or load the storage of tensors not kept', () => {
    const good = f32Bytes(Array.from({ length: 24 }, (_, i) => i));
    const bad = new Uint8Array(8);
    const pickle = stateDictPickle([
      ['cls.overrun', tensorPickle({ key: '0', numel: 24, offset: 20, shape: [5], stride: [1] })],
      ['cls.corrupt', tensorPickle({ key: '1', numel: 2, offset: 0, shape: [2], stride: [1] })],
      ['w', tensorPickle({ key: '0', numel: 24, offset: 0, shape: [6, 4], stride: [1, 6] })],
    ]);
    const archive = zipArchive([
      ['archive/data.pkl', pickle],
      ['archive/data/0', good],
      ['archive/data/1', bad],
    ]);
    // Corrupt storage 1 (only cls.corrupt uses it): its CRC no longer matches.
    const corrupt = archive.slice();
    const at = Buffer.from(corrupt).indexOf(Buffer.from('archive/data/1')) + 'archive/data/1'.length;
    corrupt[at]! ^= 0xff;
    expect(() => parseTorchCheckpoint(corrupt)).toThrow(CheckpointFormatError);
    const seen: string[] = [];
    const { tensors } = parseTorchCheckpoint(corrupt, 'filtered', {
      keep: (key) => {
        seen.push(key);
        return notHeads(key);
      },
    });
    expect(seen).toEqual(['cls.overrun', 'cls.corrupt', 'w']);
    expect([...tensors.keys()]).toEqual(['w']);
    expect(tensors.get('w')!.shape).toEqual([6, 4]);
  });
});
