import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { padBatch } from '../../layers/encoder/src/batching.ts';
import { type ImportOptions, importCheckpoint } from '../../layers/encoder/src/bundle.ts';
import {
  randomBertWeights,
  TINY_BERT_CONFIG,
  writeRandomBertCheckpoint,
} from '../../layers/encoder/src/fixture.ts';
import { type BertWeights, loadBertWeights } from '../../layers/encoder/src/weights.ts';

/** Clinical sentences used across encoder tests (written for these tests; no patient data). */
export const CLINICAL_SENTENCES = [
  'Patient denies chest pain or shortness of breath.',
  'New-onset atrial fibrillation after CABG, started on apixaban 5 mg BID.',
  'Mother had breast cancer at age 45.',
  'Rule out pulmonary embolism; CTA chest ordered.',
  'History of type 2 diabetes mellitus, on metformin.',
  'No evidence of pneumonia on chest x-ray.',
  'Discharged home in stable condition.',
  'BP 142/88, HR 96, SpO2 94% on room air.',
  'Creatinine rose from 1.1 to 2.3 mg/dL over 48 hours.',
  'She reports intermittent claudication of the left calf.',
  'Echocardiogram showed an ejection fraction of 35%.',
  'Allergies: penicillin (rash).',
];

/** The tiny fixture model's weights, validated. */
export function tinyWeights(): BertWeights {
  return loadBertWeights(TINY_BERT_CONFIG, randomBertWeights(TINY_BERT_CONFIG));
}

/** Runs an ONNX model on right-padded sequences; returns ORT's outputs as flat arrays. */
export async function runModel(
  model: Uint8Array,
  batch: readonly (readonly number[])[],
): Promise<{ embedding: Float32Array; hidden: Float32Array; width: number }> {
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: 1,
  });
  const { inputIds, attentionMask, width } = padBatch(batch);
  const out = await session.run({
    input_ids: new ort.Tensor('int64', inputIds, [batch.length, width]),
    attention_mask: new ort.Tensor('int64', attentionMask, [batch.length, width]),
  });
  await session.release();
  return {
    embedding: out.embedding!.data as Float32Array,
    hidden: out.last_hidden_state!.data as Float32Array,
    width,
  };
}

/** Cosine similarity of two vectors. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** A fresh temporary directory, removed by the caller's afterAll via the returned cleanup. */
export async function tempDir(
  prefix = 'cohort-test-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes the tiny fixture checkpoint and imports it; returns the bundle directory. */
export async function tinyBundle(root: string, options: ImportOptions = {}): Promise<string> {
  const checkpoint = join(root, 'checkpoint');
  if (!existsSync(join(checkpoint, 'model.safetensors'))) await writeRandomBertCheckpoint(checkpoint);
  const bundle = join(root, `bundle-${Math.random().toString(36).slice(2)}`);
  await importCheckpoint(checkpoint, bundle, options);
  return bundle;
}

/** The nice value of each thread of this process, by thread id (from /proc: empty off Linux). */
export function threadNiceness(): Map<number, number> {
  const out = new Map<number, number>();
  if (!existsSync('/proc/self/task')) return out;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      // Fields after "(comm) ": state is field 3 of proc(5), nice field 19.
      const fields = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      out.set(Number(tid), Number(fields[16]));
    } catch {
      // The thread ended while the list was read.
    }
  }
  return out;
}
