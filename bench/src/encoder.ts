import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BERT_BASE_CONFIG,
  BertTokenizer,
  buildBertOnnx,
  graphOptimizationLevel,
  importCheckpoint,
  loadBertWeights,
  padBatch,
  paddingEfficiency,
  planBatches,
  readBundleInfo,
  readCheckpointWeights,
  readConfig,
  writeRandomBertCheckpoint,
} from '@cohort/encoder';
import { splitSections, splitSentences } from '@cohort/notes';
import * as ort from 'onnxruntime-node';
import { printTable, quantile, round } from './stats.ts';

const WORK = fileURLToPath(new URL('../.work/', import.meta.url));
const NOTES = fileURLToPath(new URL('../../test/fixtures/notes/', import.meta.url));
const THREADS = Number(process.env['BENCH_THREADS'] ?? 2);
const SEQ = 128;
const BATCH = 8;

type Label = 'plain fp32' | 'fused fp32' | 'int8';

/**
 * Encoder benchmark on a BERT-base-sized random checkpoint (ClinicalBERT's shape, generated here,
 * not committed): throughput at 128 tokens and batch-1 latency for a 16-token query for the plain
 * fp32 graph (the baseline of a plain export), the fused fp32 graph and int8; int8's cosine to the
 * plain graph; and padding efficiency of token-budget batching on sentences from example notes.
 */
export async function runEncoderBench(): Promise<void> {
  const log = (m: string) => process.stderr.write(`[bench encoder] ${m}\n`);
  const checkpoint = join(WORK, 'bert-base-random');
  const bundle = join(WORK, 'bert-base-bundle');
  if (!existsSync(join(checkpoint, 'model.safetensors'))) {
    log('writing a BERT-base-sized random checkpoint (seeded; about 440 MB)');
    await writeRandomBertCheckpoint(checkpoint, { config: BERT_BASE_CONFIG, std: 0.02 });
  }
  // The random checkpoint is reused between runs; the bundle is rebuilt every run so that the
  // figures always measure the graphs the current code emits.
  log('importing it (fp32 and int8 variants)');
  await importCheckpoint(checkpoint, bundle, { variants: ['fp32', 'int8'], overwrite: true });
  const info = await readBundleInfo(bundle);
  log('building the plain (unfused) fp32 graph');
  const weights = loadBertWeights(
    await readConfig(join(checkpoint, 'config.json')),
    (await readCheckpointWeights(checkpoint)).tensors,
  );
  const plainModel = buildBertOnnx(weights, { kind: 'plain' });

  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
  // The plain graph gets every ONNX Runtime optimization, as a plain export would; the bundle's
  // graphs run as the encoder runs them (`graphOptimizationLevel`: basic on the CPU).
  const bundled = { ...options, graphOptimizationLevel: graphOptimizationLevel('cpu') };
  const sessions: Record<Label, ort.InferenceSession> = {
    'plain fp32': await ort.InferenceSession.create(plainModel, {
      ...options,
      graphOptimizationLevel: 'all',
    }),
    'fused fp32': await ort.InferenceSession.create(join(bundle, info.variants.fp32!.file), bundled),
    int8: await ort.InferenceSession.create(join(bundle, info.variants.int8!.file), bundled),
  };
  const labels = Object.keys(sessions) as Label[];

  const run = async (label: Label, batch: number[][]): Promise<Float32Array> => {
    const { inputIds, attentionMask, rows, width } = padBatch(batch);
    const out = await sessions[label].run(
      {
        input_ids: new ort.Tensor('int64', inputIds, [rows, width]),
        attention_mask: new ort.Tensor('int64', attentionMask, [rows, width]),
      },
      ['embedding'],
    );
    return out['embedding']!.data as Float32Array;
  };
  const randomSequence = (length: number, seed: number): number[] =>
    Array.from({ length }, (_, t) =>
      t === 0 ? 101 : t === length - 1 ? 102 : 1000 + ((seed * 7919 + t * 104729) % 27000),
    );

  // Variants are timed in blocks, one at a time, and the blocks alternate (A B C A B C …) so that
  // drift in machine load affects all of them alike. Not run by run: each session's intra-op
  // threads spin for a while after a run, and interleaving runs would time their contention.
  const timeBlocks = async (batch: number[][], warmup: number, perBlock: number, blocks: number) => {
    const samples: Record<Label, number[]> = { 'plain fp32': [], 'fused fp32': [], int8: [] };
    for (let block = 0; block < blocks; block++) {
      for (const l of labels) {
        for (let i = 0; i < warmup; i++) await run(l, batch);
        for (let i = 0; i < perBlock; i++) {
          const t0 = performance.now();
          await run(l, batch);
          samples[l].push(performance.now() - t0);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    return samples;
  };

  log(`throughput: batches of ${BATCH} × ${SEQ} tokens, ${THREADS} threads`);
  const batch128 = Array.from({ length: BATCH }, (_, i) => randomSequence(SEQ, i));
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
  const throughputMs = await timeBlocks(batch128, 1, 3, rounds);
  const seqPerSecond = (l: Label) => (BATCH * 1000) / quantile(throughputMs[l], 0.5);

  log('latency: batch 1 × 16 tokens');
  const latency = await timeBlocks([randomSequence(16, 42)], 10, 100, 2);

  log('note sentences: padding efficiency and int8 cosine');
  const tokenizer = await BertTokenizer.fromVocab(join(bundle, info.tokenizer.vocabFile));
  const sentences = await noteSentences();
  const lengths = (await tokenizer.encodeBatch(sentences)).map((t) => Math.min(t.ids.length, SEQ));
  const efficiency = paddingEfficiency(
    lengths,
    planBatches(lengths, { tokenBudget: 4096, maxBatchSize: 256 }),
  );
  const naiveEfficiency = lengths.reduce((a, b) => a + b, 0) / (lengths.length * SEQ);
  const sample = (await tokenizer.encodeBatch(sentences.slice(0, 64))).map((t) => t.ids.slice(0, SEQ));
  const cosines: number[] = [];
  for (const ids of sample) {
    const a = await run('plain fp32', [ids]);
    const b = await run('int8', [ids]);
    cosines.push(a.reduce((s, v, i) => s + v * b[i]!, 0));
  }
  const meanCosine = cosines.reduce((a, b) => a + b, 0) / cosines.length;
  for (const s of Object.values(sessions)) await s.release();

  printTable(
    ['variant', `seq/s @${SEQ} tok`, 'vs plain', 'query16 p50 ms', 'query16 p99 ms'],
    labels.map((l) => [
      l,
      round(seqPerSecond(l)),
      `${round(seqPerSecond(l) / seqPerSecond('plain fp32'))}×`,
      round(quantile(latency[l], 0.5)),
      round(quantile(latency[l], 0.99)),
    ]),
  );
  process.stdout.write('\n');
  printTable(
    ['measure', 'value'],
    [
      [
        'int8 cosine to plain fp32 (mean / min, 64 note sentences)',
        `${round(meanCosine, 5)} / ${round(Math.min(...cosines), 5)}`,
      ],
      [`padding efficiency, token budget 4096 (${lengths.length} note sentences)`, round(efficiency, 3)],
      [`padding efficiency, naive padding to ${SEQ}`, round(naiveEfficiency, 3)],
      ['threads', THREADS],
    ],
  );
  const p50 = (l: Label) => round(quantile(latency[l], 0.5));
  process.stdout.write(
    `${JSON.stringify({
      bench: 'encoder',
      int8_vs_plain: round(seqPerSecond('int8') / seqPerSecond('plain fp32')),
      fused_vs_plain: round(seqPerSecond('fused fp32') / seqPerSecond('plain fp32')),
      int8_cosine: round(meanCosine, 5),
      int8_cosine_min: round(Math.min(...cosines), 5),
      query16_p50_ms: { plain: p50('plain fp32'), fused: p50('fused fp32'), int8: p50('int8') },
      seq_per_s_128: {
        plain: round(seqPerSecond('plain fp32')),
        fused: round(seqPerSecond('fused fp32')),
        int8: round(seqPerSecond('int8')),
      },
      padding_efficiency: round(efficiency, 3),
      naive_padding_efficiency: round(naiveEfficiency, 3),
      threads: THREADS,
    })}\n`,
  );
}

/** Sentences of the example notes, split by the notes layer as the embed pipeline splits them. */
async function noteSentences(): Promise<string[]> {
  const out: string[] = [];
  for (const file of (await readdir(NOTES)).filter((f) => f !== 'SOURCE.md').sort()) {
    const text = await readFile(join(NOTES, file), 'utf8');
    for (const section of splitSections(text)) {
      for (const s of splitSentences(text, section.bodyStart, section.end))
        out.push(text.slice(s.start, s.end));
    }
  }
  return out;
}
