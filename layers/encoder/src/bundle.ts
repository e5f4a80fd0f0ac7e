import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { z } from 'zod';
import { readCheckpointWeights } from './checkpoint/index.ts';
import { type BertConfig, parseBertConfig } from './config.ts';
import { BundleError, CheckpointContentError } from './errors.ts';
import { buildBertOnnx, type GraphKind, type Pooling } from './onnx/bert.ts';
import { BertTokenizer } from './tokenizer.ts';
import { type BertWeights, canonicalTensorName, loadBertWeights } from './weights.ts';

/**
 * Model variants a bundle may hold:
 * - `fp32`: fused float32 graph, the reference for accuracy (`model.onnx`);
 * - `int8`: int8 dense weights, dynamic activation quantization; the fastest on CPU (`model.int8.onnx`);
 * - `fp16`: float16 weights and compute, for GPUs (`model.fp16.onnx`).
 */
export type Variant = 'fp32' | 'int8' | 'fp16';

/** Every variant, in the order they are written. */
export const VARIANTS: readonly Variant[] = ['fp32', 'int8', 'fp16'];

/** File name of each variant inside a bundle. */
export const VARIANT_FILES = {
  fp32: 'model.onnx',
  int8: 'model.int8.onnx',
  fp16: 'model.fp16.onnx',
} as const satisfies Readonly<Record<Variant, string>>;

/** Format tag of `model.json`; bumped when the layout changes incompatibly. */
export const BUNDLE_FORMAT = 'cohort-model-bundle/1';

const variantInfoSchema = z.strictObject({
  /** One of {@link VARIANT_FILES}: names are fixed so that a model.json cannot point outside its bundle. */
  file: z.enum(['model.onnx', 'model.int8.onnx', 'model.fp16.onnx']),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

/** Schema of `model.json`, the description of a model bundle. */
export const modelInfoSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  /** `sha256:<hex>` over weights, config and tokenizer settings: the identity of the embedding space. */
  fingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  source: z.strictObject({
    /** Hub repo id, or the local directory's name for an import from disk. */
    repo: z.string(),
    /** Revision asked for (branch, tag or commit), when pulled from the hub. */
    revision: z.string().optional(),
    /** Commit the revision resolved to, when pulled from the hub. */
    commit: z.string().optional(),
    weightsFile: z.string(),
    weightsFormat: z.enum(['safetensors', 'torch-zip', 'torch-legacy']),
    /** sha256 of the weights file as read. */
    weightsSha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  architecture: z.literal('bert'),
  dims: z.number().int().positive(),
  layers: z.number().int().positive(),
  heads: z.number().int().positive(),
  vocabSize: z.number().int().positive(),
  pooling: z.enum(['mean', 'cls']),
  normalized: z.literal(true),
  lowercase: z.boolean(),
  /** Longest input in tokens, [CLS] and [SEP] included. */
  maxLength: z.number().int().positive(),
  tokenizer: z.strictObject({
    vocabFile: z.literal('vocab.txt'),
    vocabSha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  variants: z
    .partialRecord(z.enum(['fp32', 'int8', 'fp16']), variantInfoSchema)
    .refine(
      (v) => Object.entries(v).every(([variant, info]) => info?.file === VARIANT_FILES[variant as Variant]),
      {
        message: 'each variant must name its own file (model.onnx, model.int8.onnx, model.fp16.onnx)',
      },
    ),
  createdAt: z.string(),
});

/** The parsed `model.json` of a bundle. */
export type ModelInfo = z.infer<typeof modelInfoSchema>;

/** Options of {@link importCheckpoint}. */
export interface ImportOptions {
  /** Variants to write. Default all: fp32, int8, fp16. */
  readonly variants?: readonly Variant[];
  /** Pooling. Default `mean` over the attention mask. */
  readonly pooling?: Pooling;
  /** Lowercase input before WordPiece. Default `false` (cased, as ClinicalBERT was pretrained). */
  readonly lowercase?: boolean;
  /** Longest input in tokens. Default 128 (ClinicalBERT's pretraining length), at most the config's max_position_embeddings. */
  readonly maxLength?: number;
  /** Where the checkpoint came from. Default: the directory's name, no revision. */
  readonly source?: { readonly repo: string; readonly revision?: string; readonly commit?: string };
  /** Replace an existing bundle at the destination. Default `false`. */
  readonly overwrite?: boolean;
  /** Called as each stage starts (read, validate, and each variant), for progress display. */
  readonly onStage?: (stage: string) => void;
}

/**
 * Imports a Hugging Face BERT checkpoint directory (`config.json`, `vocab.txt`, and
 * `model.safetensors` or `pytorch_model.bin`) into a model bundle: the ONNX variants, the
 * vocabulary, the config and `model.json`. The bundle appears whole or not at all (it is written
 * to a temporary sibling directory and renamed).
 * @throws CheckpointContentError / CheckpointFormatError for a bad checkpoint, BundleError when the destination is taken
 */
export async function importCheckpoint(
  checkpointDir: string,
  bundleDir: string,
  options: ImportOptions = {},
): Promise<ModelInfo> {
  const variants = options.variants ?? VARIANTS;
  const pooling = options.pooling ?? 'mean';
  const lowercase = options.lowercase ?? false;
  const stage = options.onStage ?? (() => {});
  await checkDestination(checkpointDir, bundleDir, options.overwrite ?? false);
  await removeStaleTemporaries(bundleDir);
  stage('read config');
  const config = await readConfig(join(checkpointDir, 'config.json'));
  const maxLength = options.maxLength ?? Math.min(128, config.max_position_embeddings);
  if (maxLength > config.max_position_embeddings || maxLength < 2) {
    throw new CheckpointContentError(
      `maxLength ${maxLength} must be between 2 and max_position_embeddings ${config.max_position_embeddings}`,
    );
  }
  const vocabPath = join(checkpointDir, 'vocab.txt');
  const tokenizer = await BertTokenizer.fromVocab(vocabPath, { lowercase }).catch((cause: unknown) => {
    throw new CheckpointContentError(`${vocabPath}: cannot build the tokenizer from it`, { cause });
  });
  if (tokenizer.vocabSize !== config.vocab_size) {
    throw new CheckpointContentError(
      `vocab.txt has ${tokenizer.vocabSize} tokens but config.json says vocab_size ${config.vocab_size}`,
    );
  }
  stage('read weights');
  // Only the encoder's tensors are materialized: heads, the pooler and buffers are skipped unread.
  const checkpoint = await readCheckpointWeights(checkpointDir, {
    keep: (key) => canonicalTensorName(key) !== undefined,
  });
  stage('validate weights');
  const weights = loadBertWeights(config, checkpoint.tensors);
  const vocabSha256 = await sha256File(vocabPath);
  const fingerprint = computeFingerprint(weights, { pooling, lowercase, vocabSha256 });

  await mkdir(dirname(bundleDir), { recursive: true });
  const tmp = join(dirname(bundleDir), `${temporaryPrefix(bundleDir)}${process.pid}-${Date.now()}`);
  await mkdir(tmp);
  try {
    const variantInfo: ModelInfo['variants'] = {};
    for (const variant of variants) {
      stage(`build ${variant}`);
      const kind: GraphKind = variant === 'int8' ? 'int8' : 'fused';
      const bytes = buildBertOnnx(weights, {
        kind,
        precision: variant === 'fp16' ? 'fp16' : 'fp32',
        pooling,
        metadata: { fingerprint, variant },
      });
      const file = VARIANT_FILES[variant];
      await writeFile(join(tmp, file), bytes);
      variantInfo[variant] = {
        file,
        bytes: bytes.byteLength,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      };
    }
    await copyFile(vocabPath, join(tmp, 'vocab.txt'));
    await copyFile(join(checkpointDir, 'config.json'), join(tmp, 'config.json'));
    const info: ModelInfo = {
      format: BUNDLE_FORMAT,
      fingerprint,
      source: {
        repo: options.source?.repo ?? basename(checkpointDir),
        ...(options.source?.revision ? { revision: options.source.revision } : {}),
        ...(options.source?.commit ? { commit: options.source.commit } : {}),
        weightsFile: basename(checkpoint.file),
        weightsFormat: checkpoint.format,
        weightsSha256: checkpoint.sha256,
      },
      architecture: 'bert',
      dims: config.hidden_size,
      layers: config.num_hidden_layers,
      heads: config.num_attention_heads,
      vocabSize: config.vocab_size,
      pooling,
      normalized: true,
      lowercase,
      maxLength,
      tokenizer: { vocabFile: 'vocab.txt', vocabSha256 },
      variants: variantInfo,
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(tmp, 'model.json'), `${JSON.stringify(info, null, 2)}\n`);
    // The old bundle moves aside first and is deleted only once the new one is in place, so a
    // failure between the two renames leaves a bundle (the old one, under its temporary name).
    const previous = (await exists(bundleDir)) ? `${tmp}-previous` : undefined;
    if (previous) await rename(bundleDir, previous);
    await rename(tmp, bundleDir);
    if (previous) await rm(previous, { recursive: true, force: true });
    return info;
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Reads and validates a bundle's `model.json` and checks that the files it names are there with
 * their recorded sizes (a cheap check; {@link verifyBundle} hashes them).
 * @throws BundleError saying what is missing or malformed
 */
export async function readBundleInfo(bundleDir: string): Promise<ModelInfo> {
  const path = join(bundleDir, 'model.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new BundleError(
      `${path} cannot be read; is ${bundleDir} a model bundle (made by \`cohort model import\` or \`cohort model pull\`)?`,
      { cause },
    );
  }
  const parsed = modelInfoSchema.safeParse(raw);
  if (!parsed.success) {
    throw new BundleError(`${path} is not a valid model.json: ${z.prettifyError(parsed.error)}`);
  }
  const info = parsed.data;
  for (const [variant, v] of Object.entries(info.variants)) {
    const size = await stat(join(bundleDir, v.file)).then(
      (s) => s.size,
      () => -1,
    );
    if (size !== v.bytes) {
      throw new BundleError(
        `${bundleDir}: variant ${variant} (${v.file}) is ${size < 0 ? 'missing' : `${size} bytes, ${v.bytes} expected`}`,
      );
    }
  }
  return info;
}

/**
 * The tokenizer of a bundle, configured as `model.json` says (lowercase or cased). The vocabulary
 * is part of the embedding space but small (about 200 KB), so its sha256 is checked every time.
 * @param info the bundle's model.json when already read. Default: read it.
 * @throws BundleError when the vocabulary differs from the one the bundle was built with
 */
export async function loadBundleTokenizer(bundleDir: string, info?: ModelInfo): Promise<BertTokenizer> {
  const model = info ?? (await readBundleInfo(bundleDir));
  const vocabPath = join(bundleDir, model.tokenizer.vocabFile);
  const vocabSha256 = await sha256File(vocabPath);
  if (vocabSha256 !== model.tokenizer.vocabSha256) {
    throw new BundleError(
      `${vocabPath}: sha256 ${vocabSha256}, model.json records ${model.tokenizer.vocabSha256}`,
    );
  }
  return BertTokenizer.fromVocab(vocabPath, { lowercase: model.lowercase });
}

/** Hashes every file of a bundle and compares with `model.json`. @throws BundleError on the first mismatch */
export async function verifyBundle(bundleDir: string): Promise<ModelInfo> {
  const info = await readBundleInfo(bundleDir);
  const checks: [string, string][] = [[info.tokenizer.vocabFile, info.tokenizer.vocabSha256]];
  for (const v of Object.values(info.variants)) checks.push([v.file, v.sha256]);
  for (const [file, expected] of checks) {
    const found = await sha256File(join(bundleDir, file));
    if (found !== expected)
      throw new BundleError(`${bundleDir}/${file}: sha256 ${found}, model.json records ${expected}`);
  }
  return info;
}

/**
 * The identity of an embedding space: sha256 over the encoder's tensors (names, shapes, float32
 * values, in a fixed order — so the same weights give the same fingerprint whatever file format
 * they came in), the config fields that change the function, the vocabulary and the tokenizer and
 * pooling settings. Variants of one bundle share it: they approximate the same function.
 */
export function computeFingerprint(
  weights: BertWeights,
  settings: { readonly pooling: Pooling; readonly lowercase: boolean; readonly vocabSha256: string },
): string {
  const c = weights.config;
  const hash = createHash('sha256');
  hash.update('cohort-bert-fingerprint/1\n');
  hash.update(
    JSON.stringify({
      vocab_size: c.vocab_size,
      hidden_size: c.hidden_size,
      num_hidden_layers: c.num_hidden_layers,
      num_attention_heads: c.num_attention_heads,
      intermediate_size: c.intermediate_size,
      max_position_embeddings: c.max_position_embeddings,
      type_vocab_size: c.type_vocab_size,
      layer_norm_eps: c.layer_norm_eps,
      hidden_act: c.hidden_act,
      pooling: settings.pooling,
      lowercase: settings.lowercase,
      vocab_sha256: settings.vocabSha256,
    }),
  );
  const tensor = (name: string, data: Float32Array): void => {
    hash.update(`\n${name}:${data.length}:`);
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  };
  tensor('word', weights.wordEmbeddings);
  tensor('position', weights.positionEmbeddings);
  tensor('token_type', weights.tokenTypeEmbeddings);
  tensor('embeddings.ln.gamma', weights.embeddingLayerNorm.gamma);
  tensor('embeddings.ln.beta', weights.embeddingLayerNorm.beta);
  weights.layers.forEach((layer, l) => {
    for (const [part, lin] of [
      ['query', layer.query],
      ['key', layer.key],
      ['value', layer.value],
      ['attention_output', layer.attentionOutput],
      ['intermediate', layer.intermediate],
      ['output', layer.output],
    ] as const) {
      tensor(`${l}.${part}.weight`, lin.weight);
      tensor(`${l}.${part}.bias`, lin.bias);
    }
    tensor(`${l}.attention_ln.gamma`, layer.attentionLayerNorm.gamma);
    tensor(`${l}.attention_ln.beta`, layer.attentionLayerNorm.beta);
    tensor(`${l}.output_ln.gamma`, layer.outputLayerNorm.gamma);
    tensor(`${l}.output_ln.beta`, layer.outputLayerNorm.beta);
  });
  return `sha256:${hash.digest('hex')}`;
}

/** Reads and validates a checkpoint's `config.json`. */
export async function readConfig(path: string): Promise<BertConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new CheckpointContentError(
      `${path} cannot be read; a Hugging Face checkpoint directory has config.json, vocab.txt and model.safetensors or pytorch_model.bin`,
      { cause },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointContentError(`${path} is not valid JSON`, { cause });
  }
  return parseBertConfig(raw, path);
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The destination must be new, empty, or — with `overwrite` — a bundle: never a directory of other
 * files (a mistyped `--out ~ --force` must not delete a home directory), and never the checkpoint
 * directory or one that contains it.
 */
async function checkDestination(checkpointDir: string, bundleDir: string, overwrite: boolean): Promise<void> {
  const from = resolve(checkpointDir);
  const to = resolve(bundleDir);
  if (from === to || from.startsWith(`${to}${sep}`)) {
    throw new BundleError(`${bundleDir} holds the checkpoint being imported; choose another --out`);
  }
  let names: string[];
  try {
    names = await readdir(bundleDir);
  } catch {
    return;
  }
  if (names.length === 0) return;
  if (!overwrite)
    throw new BundleError(
      `${bundleDir} already holds files; choose another --out, or --force to replace a bundle`,
    );
  const isBundle = await readFile(join(bundleDir, 'model.json'), 'utf8').then(
    (text) => (JSON.parse(text) as { format?: unknown }).format === BUNDLE_FORMAT,
    () => false,
  );
  if (!isBundle)
    throw new BundleError(`${bundleDir} holds files but no model bundle; --force replaces only a bundle`);
}

function temporaryPrefix(bundleDir: string): string {
  return `.${basename(bundleDir)}.tmp-`;
}

/** Removes temporary directories left by imports into the same destination that were killed. */
async function removeStaleTemporaries(bundleDir: string): Promise<void> {
  const prefix = temporaryPrefix(bundleDir);
  const parent = dirname(bundleDir);
  const names = await readdir(parent).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((n) => n.startsWith(prefix))
      .map((n) => rm(join(parent, n), { recursive: true, force: true })),
  );
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
