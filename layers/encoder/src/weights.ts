import type { BertConfig } from './config.ts';
import { CheckpointContentError } from './errors.ts';
import { isFloatDType, type RawTensor, toFloat32 } from './tensor.ts';

/** A dense layer as Hugging Face stores it: `weight` [out, in] row-major, `bias` [out]. */
export interface Linear {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** LayerNorm scale and shift. */
export interface LayerNormWeights {
  readonly gamma: Float32Array;
  readonly beta: Float32Array;
}

/** One transformer layer of BERT. */
export interface BertLayerWeights {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly attentionOutput: Linear;
  readonly attentionLayerNorm: LayerNormWeights;
  readonly intermediate: Linear;
  readonly output: Linear;
  readonly outputLayerNorm: LayerNormWeights;
}

/** The weights of a BERT encoder (no pooler, no heads), validated against its config. */
export interface BertWeights {
  readonly config: BertConfig;
  readonly wordEmbeddings: Float32Array;
  readonly positionEmbeddings: Float32Array;
  readonly tokenTypeEmbeddings: Float32Array;
  readonly embeddingLayerNorm: LayerNormWeights;
  readonly layers: readonly BertLayerWeights[];
}

/** The tensor names and shapes of a Hugging Face `BertModel` state dict for a config (no heads). */
export function bertTensorShapes(config: BertConfig): Map<string, number[]> {
  const h = config.hidden_size;
  const i = config.intermediate_size;
  const shapes = new Map<string, number[]>([
    ['embeddings.word_embeddings.weight', [config.vocab_size, h]],
    ['embeddings.position_embeddings.weight', [config.max_position_embeddings, h]],
    ['embeddings.token_type_embeddings.weight', [config.type_vocab_size, h]],
    ['embeddings.LayerNorm.weight', [h]],
    ['embeddings.LayerNorm.bias', [h]],
  ]);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `encoder.layer.${l}.`;
    for (const m of ['query', 'key', 'value']) {
      shapes.set(`${p}attention.self.${m}.weight`, [h, h]);
      shapes.set(`${p}attention.self.${m}.bias`, [h]);
    }
    shapes.set(`${p}attention.output.dense.weight`, [h, h]);
    shapes.set(`${p}attention.output.dense.bias`, [h]);
    shapes.set(`${p}attention.output.LayerNorm.weight`, [h]);
    shapes.set(`${p}attention.output.LayerNorm.bias`, [h]);
    shapes.set(`${p}intermediate.dense.weight`, [i, h]);
    shapes.set(`${p}intermediate.dense.bias`, [i]);
    shapes.set(`${p}output.dense.weight`, [h, i]);
    shapes.set(`${p}output.dense.bias`, [h]);
    shapes.set(`${p}output.LayerNorm.weight`, [h]);
    shapes.set(`${p}output.LayerNorm.bias`, [h]);
  }
  shapes.set('pooler.dense.weight', [h, h]);
  shapes.set('pooler.dense.bias', [h]);
  return shapes;
}

/**
 * Maps a checkpoint key to the `BertModel` state-dict name, or undefined for keys the encoder does
 * not use: pretraining heads (`cls.*`), the pooler, and buffers such as `position_ids`.
 * Handles the `bert.` prefix of `BertForPreTraining` dumps and the `gamma`/`beta` LayerNorm names of
 * checkpoints converted by pytorch-pretrained-bert (2019).
 */
export function canonicalTensorName(key: string): string | undefined {
  let name = key.startsWith('bert.') ? key.slice(5) : key;
  if (name.startsWith('cls.') || name.startsWith('pooler.') || name.endsWith('position_ids'))
    return undefined;
  name = name.replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
  return name;
}

/**
 * Checks every tensor of a checkpoint against the config (presence, shape, floating dtype) and
 * returns the encoder weights as float32.
 * @throws CheckpointContentError naming the tensor, with expected and found shape or dtype
 */
export function loadBertWeights(config: BertConfig, tensors: ReadonlyMap<string, RawTensor>): BertWeights {
  const expected = bertTensorShapes(config);
  const found = new Map<string, { key: string; tensor: RawTensor }>();
  for (const [key, tensor] of tensors) {
    const name = canonicalTensorName(key);
    if (name === undefined) continue;
    if (!expected.has(name)) {
      throw new CheckpointContentError(
        `tensor ${key} is not part of a BERT encoder with ${config.num_hidden_layers} layers; is config.json the checkpoint's own?`,
      );
    }
    found.set(name, { key, tensor });
  }
  const get = (name: string): Float32Array => {
    const entry = found.get(name);
    const shape = expected.get(name)!;
    if (!entry)
      throw new CheckpointContentError(
        `tensor ${name} is missing from the checkpoint (expected shape [${shape.join(', ')}])`,
      );
    const { key, tensor } = entry;
    if (!isFloatDType(tensor.dtype)) {
      throw new CheckpointContentError(
        `tensor ${key}: dtype ${tensor.dtype} found, a floating-point dtype (F32, F16, BF16) expected`,
      );
    }
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointContentError(
        `tensor ${key}: shape [${tensor.shape.join(', ')}] found, [${shape.join(', ')}] expected from config.json`,
      );
    }
    return toFloat32(key, tensor);
  };
  const linear = (prefix: string): Linear => {
    const shape = expected.get(`${prefix}.weight`)!;
    return {
      weight: get(`${prefix}.weight`),
      bias: get(`${prefix}.bias`),
      outFeatures: shape[0]!,
      inFeatures: shape[1]!,
    };
  };
  const layerNorm = (prefix: string): LayerNormWeights => ({
    gamma: get(`${prefix}.weight`),
    beta: get(`${prefix}.bias`),
  });
  const layers: BertLayerWeights[] = [];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `encoder.layer.${l}.`;
    layers.push({
      query: linear(`${p}attention.self.query`),
      key: linear(`${p}attention.self.key`),
      value: linear(`${p}attention.self.value`),
      attentionOutput: linear(`${p}attention.output.dense`),
      attentionLayerNorm: layerNorm(`${p}attention.output.LayerNorm`),
      intermediate: linear(`${p}intermediate.dense`),
      output: linear(`${p}output.dense`),
      outputLayerNorm: layerNorm(`${p}output.LayerNorm`),
    });
  }
  return {
    config,
    wordEmbeddings: get('embeddings.word_embeddings.weight'),
    positionEmbeddings: get('embeddings.position_embeddings.weight'),
    tokenTypeEmbeddings: get('embeddings.token_type_embeddings.weight'),
    embeddingLayerNorm: layerNorm('embeddings.LayerNorm'),
    layers,
  };
}
