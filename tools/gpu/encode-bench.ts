// Device script (GPU machine): the embed job's encoding stage (Encoder.embedIds, token-budget
// batching) on a random BERT-base at 128 tokens, per provider and variant, sequences/s. Bundled with
// esbuild and run by a carried Node.js binary (see tools/gpu/run.sh); writes one JSON file.
// Usage: node encode-bench.mjs OUT_JSON [provider,…]
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  BERT_BASE_CONFIG,
  Encoder,
  importCheckpoint,
  ONNX_IO,
  type Provider,
  readBundleInfo,
  seededUniform,
  type Variant,
  writeRandomBertCheckpoint,
} from '../../layers/encoder/src/index.ts';

const [out = 'encode-bench.json', providerList = 'webgpu'] = process.argv.slice(2);
const providers = providerList.split(',') as Provider[];
const SEQ = 128;
const BATCHES = [32, 64, 128, 256];
const logger = {
  debug: () => {},
  info: (m: string, a?: object) => console.error('info', m, JSON.stringify(a ?? {})),
  warn: (m: string, a?: object) => console.error('warn', m, JSON.stringify(a ?? {})),
  error: (m: string, a?: object) => console.error('error', m, JSON.stringify(a ?? {})),
};

const work = await mkdtemp(join(tmpdir(), 'gpu-bench-'));
const t0 = performance.now();
await writeRandomBertCheckpoint(join(work, 'ckpt'), { config: BERT_BASE_CONFIG, std: 0.02 });
await importCheckpoint(join(work, 'ckpt'), join(work, 'bundle'), { variants: ['fp16', 'fp32'] });
const importSeconds = (performance.now() - t0) / 1000;
console.error('bundle built', importSeconds.toFixed(1), 's');

const uniform = seededUniform(7);
const sequences = Array.from({ length: 1024 }, () => {
  const ids = Array.from({ length: SEQ }, () => 1000 + Math.floor(uniform() * 27000));
  ids[0] = 101;
  ids[SEQ - 1] = 102;
  return ids;
});

const results: object[] = [];
for (const provider of providers) {
  for (const variant of ['fp16', 'fp32'] as Variant[]) {
    let encoder: Encoder;
    try {
      encoder = await Encoder.load(join(work, 'bundle'), { provider, variant, logger });
    } catch (error) {
      results.push({ provider, variant, error: (error as Error).message });
      console.error(provider, variant, 'failed to load:', (error as Error).message);
      continue;
    }
    for (const batch of BATCHES) {
      const options = { tokenBudget: batch * SEQ, maxBatchSize: batch, batchOverheadTokens: 2048 };
      try {
        await encoder.embedIds(sequences.slice(0, batch * 2), options);
        const start = performance.now();
        let done = 0;
        while (performance.now() - start < 5000) {
          const r = await encoder.embedIds(sequences.slice(0, Math.min(1024, batch * 4)), options);
          done += r.stats.sequences;
        }
        const seqsPerS = done / ((performance.now() - start) / 1000);
        results.push({ provider: encoder.provider, variant, batch, seqs_per_s: seqsPerS });
        console.error(provider, variant, batch, Math.round(seqsPerS), 'seq/s');
      } catch (error) {
        results.push({ provider, variant, batch, error: (error as Error).message });
        console.error(provider, variant, batch, 'failed:', (error as Error).message);
      }
    }
    await encoder.close();
  }
}
await writeFile(out, `${JSON.stringify({ seq: SEQ, import_seconds: importSeconds, results }, null, 2)}\n`);

// Where the time goes on the GPU: an ONNX Runtime profile of the fp16 graph on WebGPU (per-node
// times and the provider each node ran on), written beside the results.
const profileDir = process.env['PROFILE_DIR'];
if (profileDir) {
  const info = await readBundleInfo(join(work, 'bundle'));
  const session = await ort.InferenceSession.create(join(work, 'bundle', info.variants.fp16!.file), {
    executionProviders: ['webgpu'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 1,
    enableProfiling: true,
    profileFilePrefix: join(profileDir, 'ort-webgpu-fp16'),
  });
  const rows = 64;
  const ids = new BigInt64Array(rows * SEQ);
  for (let r = 0; r < rows; r++) for (let c = 0; c < SEQ; c++) ids[r * SEQ + c] = BigInt(sequences[r]![c]!);
  const feeds = {
    [ONNX_IO.inputIds]: new ort.Tensor('int64', ids, [rows, SEQ]),
    [ONNX_IO.attentionMask]: new ort.Tensor('int64', new BigInt64Array(rows * SEQ).fill(1n), [rows, SEQ]),
  };
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    await session.run(feeds);
    console.error('profiled run', i, (performance.now() - start).toFixed(1), 'ms');
  }
  session.endProfiling();
  await session.release();
}
