import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointFormatError } from '../errors.ts';
import type { RawTensor } from '../tensor.ts';
import { parseSafetensors } from './safetensors.ts';
import { type CheckpointReadOptions, parseTorchCheckpoint } from './torch.ts';

export * from './safetensors.ts';
export * from './torch.ts';

/** Weight files looked for in a checkpoint directory, most preferred first. */
export const CHECKPOINT_WEIGHT_FILES = ['model.safetensors', 'pytorch_model.bin'] as const;

/** Container of a checkpoint's weights file. */
export type CheckpointWeightsFormat = 'safetensors' | 'torch-zip' | 'torch-legacy';

/** The weights of a Hugging Face checkpoint directory, as read by {@link readCheckpointWeights}. */
export interface CheckpointWeights {
  /** Path of the file read: `dir` joined with `model.safetensors` or `pytorch_model.bin`. */
  readonly file: string;
  readonly format: CheckpointWeightsFormat;
  /**
   * Tensors by state-dict key, as stored (no prefix stripped, no dtype converted); only those the
   * `keep` option kept, when one was given.
   */
  readonly tensors: Map<string, RawTensor>;
  /** SHA-256 of the whole weights file, lowercase hex, from the bytes that were parsed. */
  readonly sha256: string;
}

/**
 * Reads the weights of a Hugging Face checkpoint directory: `model.safetensors` when present (it
 * needs no pickle and is what the hub serves for newer uploads), else `pytorch_model.bin` in either
 * torch container.
 * @param options `keep`: which state-dict keys to return (default all); tensors not kept are not
 *   materialized, though the whole file is still read and hashed
 * @throws CheckpointFormatError when the directory cannot be listed, holds neither file (the message
 *   lists what was looked for and what is there), holds only a sharded checkpoint (`*.index.json`),
 *   or the weights file cannot be parsed
 */
export async function readCheckpointWeights(
  dir: string,
  options: CheckpointReadOptions = {},
): Promise<CheckpointWeights> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (cause) {
    throw new CheckpointFormatError(`${dir}: cannot list the checkpoint directory`, { cause });
  }
  const present = new Set(names);
  for (const name of CHECKPOINT_WEIGHT_FILES) {
    if (!present.has(name)) continue;
    const file = join(dir, name);
    const bytes = await readFile(file);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (name === 'model.safetensors')
      return { file, format: 'safetensors', tensors: parseSafetensors(bytes, file, options), sha256 };
    const { format, tensors } = parseTorchCheckpoint(bytes, file, options);
    return { file, format, tensors, sha256 };
  }
  const indexes = names.filter((n) => n.endsWith('.index.json')).sort();
  if (indexes.length > 0) {
    throw new CheckpointFormatError(
      `${dir}: sharded checkpoints (${indexes.join(', ')}) are not supported; ` +
        'merge the shards into one model.safetensors or pytorch_model.bin first',
    );
  }
  const listing = names.length === 0 ? 'it is empty' : `it holds ${names.sort().slice(0, 20).join(', ')}`;
  throw new CheckpointFormatError(
    `${dir}: no weights file; looked for ${CHECKPOINT_WEIGHT_FILES.join(' and ')}, ${listing}` +
      `${names.length > 20 ? ', …' : ''}`,
  );
}
