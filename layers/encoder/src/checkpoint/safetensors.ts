import { open, readFile } from 'node:fs/promises';
import { CheckpointFormatError } from '../errors.ts';
import { DTYPE_BYTES, elementCount, type RawTensor, type TensorDType } from '../tensor.ts';

// The safetensors format is small and fully specified (8-byte little-endian header length, a JSON
// header, then the tensor bytes); the reference reader is Rust/Python only, so this is written here.

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Reads every tensor of a `.safetensors` file. Tensors are views into one buffer holding the file. */
export async function readSafetensors(path: string): Promise<Map<string, RawTensor>> {
  const file = await readFile(path);
  return parseSafetensors(file, path);
}

/** Parses a safetensors image already in memory; `label` names it in errors. */
export function parseSafetensors(file: Uint8Array, label = 'safetensors'): Map<string, RawTensor> {
  if (file.byteLength < 8)
    throw new CheckpointFormatError(`${label}: ${file.byteLength} bytes, too short for safetensors`);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > file.byteLength) {
    throw new CheckpointFormatError(
      `${label}: header length ${headerLength} does not fit the file (${file.byteLength} bytes)`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
  } catch (cause) {
    throw new CheckpointFormatError(`${label}: header is not valid JSON`, { cause });
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, RawTensor>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const {
      dtype,
      shape,
      data_offsets: offsets,
    } = (entry ?? {}) as {
      dtype?: string;
      shape?: number[];
      data_offsets?: [number, number];
    };
    if (!dtype || !(dtype in DTYPE_BYTES)) {
      throw new CheckpointFormatError(`${label}: tensor ${name} has unsupported dtype ${String(dtype)}`);
    }
    if (!Array.isArray(shape) || !Array.isArray(offsets) || offsets.length !== 2) {
      throw new CheckpointFormatError(`${label}: tensor ${name} has a malformed header entry`);
    }
    const [begin, end] = offsets;
    const expected = elementCount(shape) * DTYPE_BYTES[dtype as TensorDType];
    if (end - begin !== expected || dataStart + end > file.byteLength || begin < 0) {
      throw new CheckpointFormatError(
        `${label}: tensor ${name} spans bytes [${begin}, ${end}) but ${dtype}[${shape.join(', ')}] needs ${expected}`,
      );
    }
    tensors.set(name, {
      dtype: dtype as TensorDType,
      shape,
      bytes: file.subarray(dataStart + begin, dataStart + end),
    });
  }
  return tensors;
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
