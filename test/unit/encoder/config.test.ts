import { describe, expect, it } from 'vitest';
import { parseBertConfig } from '../../../layers/encoder/src/config.ts';
import { CheckpointContentError } from '../../../layers/encoder/src/errors.ts';

// The shape of the config.json in the 2020 ClinicalBERT repos, converted from TensorFlow: no
// model_type, no architectures, no layer_norm_eps.
const untypedBertBase = {
  attention_probs_dropout_prob: 0.1,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  hidden_size: 768,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 512,
  num_attention_heads: 12,
  num_hidden_layers: 12,
  type_vocab_size: 2,
  vocab_size: 28996,
};

describe('parseBertConfig', () => {
  it('accepts a BERT config that names neither model_type nor architectures, with BERT defaults', () => {
    const config = parseBertConfig(untypedBertBase);
    expect(config).toMatchObject({
      model_type: 'bert',
      hidden_size: 768,
      layer_norm_eps: 1e-12,
      hidden_act: 'gelu',
    });
  });

  it('accepts a config whose architectures name a BERT class', () => {
    expect(parseBertConfig({ ...untypedBertBase, architectures: ['BertForMaskedLM'] }).model_type).toBe(
      'bert',
    );
  });

  it('refuses another model type, declared or implied by its architectures', () => {
    expect(() => parseBertConfig({ ...untypedBertBase, model_type: 'roberta' })).toThrow(
      /model_type is "roberta"/,
    );
    expect(() => parseBertConfig({ ...untypedBertBase, architectures: ['GPT2LMHeadModel'] })).toThrow(
      CheckpointContentError,
    );
  });

  it('names the field that is missing or unsupported', () => {
    const { num_hidden_layers: _, ...noLayers } = untypedBertBase;
    expect(() => parseBertConfig(noLayers)).toThrow(
      'num_hidden_layers must be a positive integer, found null',
    );
    expect(() => parseBertConfig({ ...untypedBertBase, hidden_act: 'gelu_new' })).toThrow(
      /hidden_act "gelu_new" is not supported/,
    );
    expect(() => parseBertConfig({ ...untypedBertBase, num_attention_heads: 10 })).toThrow(/not divisible/);
    expect(() => parseBertConfig({ ...untypedBertBase, position_embedding_type: 'relative_key' })).toThrow(
      /position_embedding_type/,
    );
    expect(() => parseBertConfig([1, 2])).toThrow(CheckpointContentError);
  });
});
