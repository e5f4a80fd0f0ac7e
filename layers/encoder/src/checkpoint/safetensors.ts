import { open, readFile } from 'node:fs/promises';
import { CheckpointFormatError } from '../errors.ts';
import { DTYPE_BYTES, type RawTensor, type TensorDType } from '../tensor.ts';
import type { CheckpointReadOptions } from './torch.ts';

// The safetensors format is small and fully specified (8-byte little-endian header length, a JSON
// header, then the tensor bytes); the reference reader is Rust/Python only, so this is written here.

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Reads the tensors of a `.safetensors` file. Tensors are views into one buffer holding the file.
 * @param options `keep`: which tensor names to return (default all); every header entry is
 *   validated either way
 */
export async function readSafetensors(
  path: string,
  options: CheckpointReadOptions = {},
): Promise<Map<string, RawTensor>> {
  const file = await readFile(path);
  return parseSafetensors(file, path, options);
}

/**
 * Parses a safetensors image already in memory; `label` names it in errors.
 * @throws CheckpointFormatError when the header is not a JSON object of well-formed entries: a known
 *   dtype, a shape of non-negative safe integers, `data_offsets` `[begin, end]` of integers with
 *   `0 <= begin <= end` inside the data area and matching the shape, no two tensors' bytes
 *   overlapping, and `__metadata__`, if present, a map of strings
 */
export function parseSafetensors(
  file: Uint8Array,
  label = 'safetensors',
  options: CheckpointReadOptions = {},
): Map<string, RawTensor> {
  if (file.byteLength < 8)
    throw new CheckpointFormatError(`${label}: ${file.byteLength} bytes, too short for safetensors`);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > file.byteLength) {
    throw new CheckpointFormatError(
      `${label}: header length ${headerLength} does not fit the file (${file.byteLength} bytes)`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
  } catch (cause) {
    throw new CheckpointFormatError(`${label}: header is not valid JSON`, { cause });
  }
  if (!isObject(header)) throw new CheckpointFormatError(`${label}: header is not a JSON object`);
  const dataStart = 8 + headerLength;
  const dataLength = file.byteLength - dataStart;
  const tensors = new Map<string, RawTensor>();
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    const fail = (message: string) => new CheckpointFormatError(`${label}: tensor ${name} ${message}`);
    if (name === '__metadata__') {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string'))
        throw new CheckpointFormatError(`${label}: __metadata__ is not a map of strings`);
      continue;
    }
    if (!isObject(entry)) throw fail('has a malformed header entry');
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype))
      throw fail(`has unsupported dtype ${brief(dtype)}`);
    if (!Array.isArray(shape) || !Array.isArray(offsets)) throw fail('has a malformed header entry');
    if (!shape.every(isSize)) throw fail(`has shape ${brief(shape)}, not a list of non-negative integers`);
    if (offsets.length !== 2 || !offsets.every(isSize) || offsets[0]! > offsets[1]!) {
      throw fail(
        `has data_offsets ${brief(offsets)}, not two non-negative integers [begin, end] with begin <= end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) throw fail(`spans bytes [${begin}, ${end}) of a ${dataLength}-byte data area`);
    // Every dimension is a safe integer and the bytes fit the file, so the product is compared
    // exactly whenever it could match.
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * DTYPE_BYTES[dtype as TensorDType];
    if (end - begin !== expected) {
      throw fail(`spans bytes [${begin}, ${end}) but ${dtype}[${shape.join(', ')}] needs ${expected}`);
    }
    if (begin < end) spans.push({ name, begin, end });
    if (options.keep && !options.keep(name)) continue;
    tensors.set(name, {
      dtype: dtype as TensorDType,
      shape,
      bytes: file.subarray(dataStart + begin, dataStart + end),
    });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const previous = spans[i - 1]!;
    const span = spans[i]!;
    if (span.begin < previous.end) {
      throw new CheckpointFormatError(
        `${label}: tensor ${span.name} (bytes [${span.begin}, ${span.end})) overlaps tensor ${previous.name} ` +
          `(bytes [${previous.begin}, ${previous.end}))`,
      );
    }
  }
  return tensors;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A header value for an error message, cut to 80 characters; strings as they are. */
function brief(v: unknown): string {
  const text = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** A dimension or byte offset: a non-negative safe integer. */
function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Writes tensors as a `.safetensors` file, in the order given.
 * @param metadata optional string map stored under `__metadata__` (e.g. `{ format: 'pt' }`)
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, RawTensor>,
  metadata: Record<string, string> = { format: 'pt' },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // The format asks for the data to start 8-byte aligned; pad the header with spaces.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  const handle = await open(path, 'w');
  try {
    await handle.write(prefix);
    await handle.write(headerBytes);
    for (const t of tensors.values()) await handle.write(t.bytes);
  } finally {
    await handle.close();
  }
}

/** Wraps a Float32Array as an F32 {@link RawTensor} (no copy). */
export function float32Tensor(shape: readonly number[], data: Float32Array): RawTensor {
  return { dtype: 'F32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
