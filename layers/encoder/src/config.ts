import { CheckpointContentError } from './errors.ts';

/** The fields of a Hugging Face BERT `config.json` that the encoder uses (others are kept, unused). */
export interface BertConfig {
  readonly model_type: string;
  readonly architectures?: readonly string[];
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly intermediate_size: number;
  readonly hidden_act: string;
  readonly hidden_dropout_prob?: number;
  readonly attention_probs_dropout_prob?: number;
  readonly max_position_embeddings: number;
  readonly type_vocab_size: number;
  readonly initializer_range?: number;
  /** LayerNorm epsilon. Default 1e-12 (BERT's). */
  readonly layer_norm_eps: number;
  readonly pad_token_id?: number;
  readonly position_embedding_type?: string;
}

const REQUIRED_INTEGERS = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'intermediate_size',
  'max_position_embeddings',
  'type_vocab_size',
] as const;

/**
 * Validates a parsed `config.json` as a BERT config that this encoder can compile.
 * Checkpoints of 2019–2020 converted from TensorFlow often name neither `model_type` nor
 * `architectures` (the ClinicalBERT repos among them); Hugging Face then guesses from the repo
 * name. Here such a config is accepted as BERT when it has every BERT field and names no other
 * model type; a config that names another type is refused.
 * @throws CheckpointContentError naming the field that is missing or unsupported
 */
export function parseBertConfig(raw: unknown, label = 'config.json'): BertConfig {
  if (typeof raw !== 'object' || raw === null)
    throw new CheckpointContentError(`${label}: not a JSON object`);
  const c = raw as Record<string, unknown>;
  const architectures = Array.isArray(c['architectures']) ? (c['architectures'] as unknown[]) : [];
  const declared = typeof c['model_type'] === 'string' ? c['model_type'] : undefined;
  const bertArchitecture = architectures.some((a) => typeof a === 'string' && a.startsWith('Bert'));
  if (declared !== undefined ? declared !== 'bert' : architectures.length > 0 && !bertArchitecture) {
    throw new CheckpointContentError(
      `${label}: model_type is ${JSON.stringify(declared ?? null)} (architectures ${JSON.stringify(architectures)}); only BERT checkpoints (model_type "bert") can be imported`,
    );
  }
  for (const key of REQUIRED_INTEGERS) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new CheckpointContentError(
        `${label}: ${key} must be a positive integer, found ${JSON.stringify(v ?? null)}`,
      );
    }
  }
  const hidden = c['hidden_size'] as number;
  const heads = c['num_attention_heads'] as number;
  if (hidden % heads !== 0) {
    throw new CheckpointContentError(
      `${label}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`,
    );
  }
  const act = c['hidden_act'] ?? 'gelu';
  if (act !== 'gelu') {
    throw new CheckpointContentError(
      `${label}: hidden_act ${JSON.stringify(act)} is not supported (only exact "gelu")`,
    );
  }
  const pet = c['position_embedding_type'] ?? 'absolute';
  if (pet !== 'absolute') {
    throw new CheckpointContentError(
      `${label}: position_embedding_type ${JSON.stringify(pet)} is not supported (only "absolute")`,
    );
  }
  const eps = c['layer_norm_eps'] ?? 1e-12;
  if (typeof eps !== 'number' || !(eps > 0))
    throw new CheckpointContentError(`${label}: layer_norm_eps must be a positive number`);
  return { ...(c as object), model_type: 'bert', hidden_act: 'gelu', layer_norm_eps: eps } as BertConfig;
}
