import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { float32Tensor, writeSafetensors } from './checkpoint/safetensors.ts';
import type { BertConfig } from './config.ts';
import type { RawTensor } from './tensor.ts';
import { bertTensorShapes } from './weights.ts';

/** Path of the bert-base-cased vocabulary shipped with this package (the ClinicalBERT vocabulary). */
export const BERT_BASE_CASED_VOCAB = fileURLToPath(
  new URL('../assets/vocab-bert-base-cased.txt', import.meta.url),
);

/** The tiny fixture model's shape: ClinicalBERT's architecture and vocabulary, 2 layers, hidden 32. */
export const TINY_BERT_CONFIG: BertConfig = {
  model_type: 'bert',
  architectures: ['BertModel'],
  vocab_size: 28996,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 512,
  type_vocab_size: 2,
  initializer_range: 0.02,
  layer_norm_eps: 1e-12,
  pad_token_id: 0,
};

/** BERT-base's shape (ClinicalBERT's): 12 layers, hidden 768, 12 heads, intermediate 3072. */
export const BERT_BASE_CONFIG: BertConfig = {
  ...TINY_BERT_CONFIG,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
};

/**
 * A seeded uniform generator on [0, 1) (mulberry32): the same seed gives the same sequence on
 * every machine, since it uses only 32-bit integer arithmetic. Used for fixtures and synthetic
 * benchmark data.
 */
export function seededUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded standard normal generator: {@link seededUniform} through Box-Muller (Math.log/sqrt/cos). */
export function seededNormal(seed: number): () => number {
  const uniform = seededUniform(seed);
  return () => {
    const u = 1 - uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** Options of {@link randomBertWeights}. */
export interface RandomBertOptions {
  /** PRNG seed. Default 1234. */
  readonly seed?: number;
  /**
   * Standard deviation of matrices and embeddings. Default 0.1: larger than BERT's 0.02 initializer so
   * that a tiny model's outputs differ visibly between inputs.
   */
  readonly std?: number;
}

/** Deterministic random weights for a BERT config, as F32 tensors in state-dict order. */
export function randomBertWeights(
  config: BertConfig,
  options: RandomBertOptions = {},
): Map<string, RawTensor> {
  const normal = seededNormal(options.seed ?? 1234);
  const std = options.std ?? 0.1;
  const out = new Map<string, RawTensor>();
  for (const [name, shape] of bertTensorShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isLayerNormWeight = name.endsWith('LayerNorm.weight');
    for (let k = 0; k < data.length; k++) {
      data[k] = isLayerNormWeight ? 1 + 0.1 * normal() : std * normal();
    }
    out.set(name, float32Tensor(shape, data));
  }
  return out;
}

/** Options of {@link writeRandomBertCheckpoint}. */
export interface WriteCheckpointOptions extends RandomBertOptions {
  /** Model shape. Default {@link TINY_BERT_CONFIG}. */
  readonly config?: BertConfig;
}

/**
 * Writes a random BERT checkpoint in Hugging Face layout (`config.json`, `vocab.txt`,
 * `model.safetensors`) to `dir`. With the defaults this is the tiny fixture model: ClinicalBERT's
 * architecture and real vocabulary, random weights, meaningless rankings.
 */
export async function writeRandomBertCheckpoint(
  dir: string,
  options: WriteCheckpointOptions = {},
): Promise<void> {
  const config = options.config ?? TINY_BERT_CONFIG;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await copyFile(BERT_BASE_CASED_VOCAB, join(dir, 'vocab.txt'));
  await writeSafetensors(join(dir, 'model.safetensors'), randomBertWeights(config, options));
}
