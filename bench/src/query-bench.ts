import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BERT_BASE_CONFIG,
  importCheckpoint,
  readBundleInfo,
  seededUniform,
  writeRandomBertCheckpoint,
} from '@cohort/encoder';
import {
  buildSegments,
  type ChunkMeta,
  LocalDirectoryStore,
  ManifestStore,
  NoteTextStore,
  SEGMENT_FILES,
  segmentKey,
} from '@cohort/index';
import { SECTION_CATEGORIES } from '@cohort/notes';
import { printTable, quantile, round } from './stats.ts';

const WORK = fileURLToPath(new URL('../.work/', import.meta.url));
const COHORT_BIN = fileURLToPath(new URL('../../cli/bin/cohort.mjs', import.meta.url));
const CHUNKS = Number(process.env['BENCH_QUERY_CHUNKS'] ?? 100_000);
/** Seconds of the load phase (the 60 s by default). */
const DURATION = Number(process.env['BENCH_QUERY_DURATION'] ?? 60);
const CONNECTIONS = 20;
const WARM_REQUESTS = Number(process.env['BENCH_QUERY_REQUESTS'] ?? 300);
/** Seconds of the baseline load phase (model in the server thread). */
const BASELINE_DURATION = Number(process.env['BENCH_QUERY_BASELINE_DURATION'] ?? 20);
/** Pause between the warm-up searches and the warm measurement, in ms. */
const WARM_PAUSE_MS = 5000;
const DIMS = 768;
const CHUNKS_PER_NOTE = 5;
const NOTES_PER_PATIENT = 4;
const CLUSTERS = 200;
const NOTE_TYPES = ['discharge', 'radiology', 'nursing', 'physician', 'ecg', 'echo'];

/** The parts of autocannon (CommonJS, no types shipped) this benchmark uses. */
interface AutocannonResult {
  readonly requests: { readonly average: number };
  readonly latency: { readonly p50: number; readonly p99: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  requests: {
    method: string;
    headers: Record<string, string>;
    setupRequest: (req: Record<string, unknown>) => Record<string, unknown>;
  }[];
}) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const log = (m: string) => process.stderr.write(`[bench query] ${m}\n`);

/** Phrases the generated notes and queries are made of (written for this benchmark; no patient data). */
const FINDINGS = [
  'atrial fibrillation',
  'congestive heart failure',
  'acute kidney injury',
  'community acquired pneumonia',
  'deep vein thrombosis',
  'pulmonary embolism',
  'type 2 diabetes mellitus',
  'sepsis',
  'upper gastrointestinal bleed',
  'ischemic stroke',
  'chronic obstructive pulmonary disease exacerbation',
  'hyperkalemia',
  'delirium',
  'urinary tract infection',
  'myocardial infarction',
];
const CONTEXTS = [
  'after CABG',
  'on admission',
  'treated with apixaban',
  'on heparin drip',
  'requiring intubation',
  'discharged home',
  'with new onset',
  'resolved with diuresis',
  'on insulin sliding scale',
  'after cardiac catheterization',
];

/** Seeded standard normal (Box–Muller). */
function gaussian(seed: number): () => number {
  const u = seededUniform(seed);
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

/** n unit vectors around 200 random centres (as the index benchmark), so HNSW sees structure. */
function clusteredVectors(n: number, seed: number): Float32Array {
  const g = gaussian(seed);
  const centres = new Float32Array(CLUSTERS * DIMS).map(() => g());
  const pick = seededUniform(seed ^ 0x9e3779b9);
  const data = new Float32Array(n * DIMS);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(pick() * CLUSTERS) * DIMS;
    let norm = 0;
    for (let d = 0; d < DIMS; d++) {
      const v = centres[c + d]! / Math.sqrt(DIMS) + 0.03 * g();
      data[i * DIMS + d] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let d = 0; d < DIMS; d++) data[i * DIMS + d]! *= inv;
  }
  return data;
}

/** The bench's int8 BERT-base-sized random model (its own copy: the encoder bench rebuilds its bundle). */
async function benchModel(): Promise<string> {
  const checkpoint = join(WORK, 'bert-base-random');
  const bundle = join(WORK, 'query', 'model');
  if (existsSync(join(bundle, 'model.json'))) return bundle;
  if (!existsSync(join(checkpoint, 'model.safetensors'))) {
    log('writing a BERT-base-sized random checkpoint (seeded; about 440 MB)');
    await writeRandomBertCheckpoint(checkpoint, { config: BERT_BASE_CONFIG, std: 0.02 });
  }
  log('importing it (int8 only)');
  await importCheckpoint(checkpoint, bundle, { variants: ['int8'], overwrite: true });
  return bundle;
}

/**
 * The synthetic index: CHUNKS chunks of 768-d vectors, 5 chunks per note, 4 notes per patient,
 * note types, dates, sections and some assertion scopes, and every note's text in the NoteTextStore
 * (so evidence reads real snippets). Reused while the model fingerprint and size match.
 */
async function benchIndex(fingerprint: string): Promise<string> {
  const dir = join(WORK, 'query', `index-${CHUNKS}`);
  const store = new LocalDirectoryStore(dir, { fsync: false });
  const latest = await new ManifestStore(store).latest().catch(() => undefined);
  if (
    latest?.modelFingerprint === fingerprint &&
    latest.segments.reduce((s, x) => s + x.count, 0) === CHUNKS
  ) {
    return dir;
  }
  await rm(dir, { recursive: true, force: true });
  const r = seededUniform(7);
  const int = (n: number) => Math.floor(r() * n);
  const texts = new NoteTextStore(store, { cacheEntries: 0 });
  const chunks: ChunkMeta[] = [];
  log(`generating ${CHUNKS} chunks with metadata and note texts`);
  for (let note = 0; note * CHUNKS_PER_NOTE < CHUNKS; note++) {
    const noteId = `note-${note}`;
    const patientId = `patient-${Math.floor(note / NOTES_PER_PATIENT)}`;
    const noteType = NOTE_TYPES[int(NOTE_TYPES.length)]!;
    const noteDate = `${2010 + int(13)}-${String(1 + int(12)).padStart(2, '0')}-${String(1 + int(28)).padStart(2, '0')}`;
    let text = '';
    const n = Math.min(CHUNKS_PER_NOTE, CHUNKS - note * CHUNKS_PER_NOTE);
    for (let c = 0; c < n; c++) {
      const sentences = Array.from(
        { length: 3 + int(3) },
        () =>
          `${int(4) === 0 ? 'No evidence of ' : 'Patient with '}${FINDINGS[int(FINDINGS.length)]} ${CONTEXTS[int(CONTEXTS.length)]}.`,
      );
      const start = text.length;
      text += `${sentences.join(' ')}\n\n`;
      const end = start + sentences.join(' ').length;
      const negated = sentences[0]!.startsWith('No evidence');
      chunks.push({
        noteId,
        patientId,
        section: SECTION_CATEGORIES[int(SECTION_CATEGORIES.length)]!,
        start,
        end,
        tokens: Math.round((end - start) / 4),
        assertions: negated ? [{ kind: 'negated', start, end: start + sentences[0]!.length }] : [],
        flags: [],
        noteType,
        noteDate,
      });
    }
    await texts.put(noteId, undefined, text);
  }
  log(`building ${CHUNKS} vectors into 2 segments on 2 workers (HNSW M=16, efConstruction=200)`);
  const work = await mkdtemp(join(tmpdir(), 'query-bench-'));
  try {
    const t0 = performance.now();
    const descriptors = await buildSegments(
      { vectors: clusteredVectors(CHUNKS, 11), chunks },
      { dir: work, dims: DIMS, modelFingerprint: fingerprint, workers: 2 },
    );
    log(`built in ${round((performance.now() - t0) / 1000, 1)} s; committing`);
    const entries = [];
    for (const [i, d] of descriptors.entries()) {
      const segmentDir = join(work, String(i));
      for (const file of [
        SEGMENT_FILES.graph,
        SEGMENT_FILES.vectors,
        SEGMENT_FILES.chunks,
        SEGMENT_FILES.descriptor,
      ]) {
        await store.putFile(segmentKey(d.id, file), join(segmentDir, file));
      }
      const bytes = await readFile(join(segmentDir, SEGMENT_FILES.descriptor));
      entries.push({ id: d.id, count: d.count, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    await new ManifestStore(store).commit({
      id: 'bench',
      addSegments: entries,
      modelFingerprint: fingerprint,
      dims: DIMS,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return dir;
}

/**
 * n distinct generated queries ("patients with FINDING CONTEXT and FINDING"), in a seeded order, so
 * the server's query-vector cache (256 entries) does not flatter the figures: the bench cycles
 * through more queries than the cache holds. Up to 2,100 distinct; past that a number is appended.
 */
function queries(n: number): string[] {
  const all: string[] = [];
  for (const a of FINDINGS)
    for (const c of CONTEXTS)
      for (const b of FINDINGS) if (a !== b) all.push(`patients with ${a} ${c} and ${b}`);
  const r = seededUniform(99);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return Array.from({ length: n }, (_, i) =>
    i < all.length ? all[i]! : `${all[i % all.length]} (${Math.floor(i / all.length)})`,
  );
}

function post(url: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: '/v1/search',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Starts `cohort serve` (its cache folder holds the audit log); resolves with its URL once it listens. */
function serve(
  index: string,
  model: string,
  cache: string,
  extra: readonly string[] = [],
): { child: ChildProcess; url: Promise<string> } {
  const child = spawn(
    process.execPath,
    [COHORT_BIN, 'serve', '--data', index, '--model', model, '--port', '0', ...extra],
    {
      env: { ...process.env, COHORT_CACHE_DIR: cache, COHORT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n')) resolve((JSON.parse(line!) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`cohort serve exited with ${code}`)));
  });
  return { child, url };
}

/** `CONNECTIONS` autocannon clients searching with distinct queries for `seconds`. */
function loadPhase(url: string, seconds: number, body: () => string): Promise<AutocannonResult> {
  return autocannon({
    url: `${url}/v1/search`,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: body() }),
      },
    ],
  });
}

/**
 * Query API benchmark: `cohort serve` on loopback over a 100,000-chunk synthetic index in the
 * directory store, with the int8 BERT-base-sized random model embedding each query. Measures the
 * cold start (process start to the first answer; a directory index is read in place, so there is no
 * segment cache to fill), warm latency of
 * `POST /v1/search` with k = 50 (one client), and 20 concurrent clients for 60 s (autocannon);
 * then, restarted with the model in the server thread (as in Lambda), the same clients for 20 s
 * as the baseline of the model workers' throughput.
 */
export async function runQueryBench(): Promise<void> {
  const model = await benchModel();
  const info = await readBundleInfo(model);
  const index = await benchIndex(info.fingerprint);
  const cache = await mkdtemp(join(tmpdir(), 'query-bench-cache-'));
  const qs = queries(2000);
  let next = 0;
  const body = () => JSON.stringify({ query: qs[next++ % qs.length], k: 50 });
  /** Starts the server and sends one search; the time from process start to its answer. */
  const startAndAsk = async (extra: readonly string[] = []) => {
    const t0 = performance.now();
    const { child, url: urlPromise } = serve(index, model, cache, extra);
    const stop = async () => {
      // Wait for the server to finish its last audit writes before its cache directory goes.
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    };
    try {
      const url = await urlPromise;
      const first = await post(url, body());
      if (first.status !== 200)
        throw new Error(`first search answered ${first.status}: ${first.body.slice(0, 200)}`);
      const answer = JSON.parse(first.body) as { cohort: unknown[]; index: { chunks: number } };
      return {
        url,
        stop,
        ms: performance.now() - t0,
        patients: answer.cohort.length,
        chunks: answer.index.chunks,
      };
    } catch (error) {
      await stop();
      throw error;
    }
  };
  try {
    log('cold start: cohort serve, until the first search answers');
    const cold = await startAndAsk();
    const coldStartMs = cold.ms;
    log(`cold start ${round(coldStartMs)} ms; ${cold.patients} patients from ${cold.chunks} chunks`);
    let samples: number[] = [];
    let server: number[] = [];
    /** Server timings of the warm searches, by part. */
    const parts = { encodeMs: [] as number[], searchMs: [] as number[], evidenceMs: [] as number[] };
    let load: AutocannonResult;
    try {
      const url = cold.url;
      log(`warm latency: ${WARM_REQUESTS} sequential searches, k = 50, distinct queries`);
      for (let i = 0; i < 20; i++) await post(url, body());
      // A server with several model workers (the default `--model-workers auto`, or a number) starts
      // the others after its first answer; a pause lets that finish (and the machine settle) before
      // measuring a warm server.
      await new Promise((resolve) => setTimeout(resolve, WARM_PAUSE_MS));
      samples = [];
      server = [];
      for (let i = 0; i < WARM_REQUESTS; i++) {
        const s = performance.now();
        const r = await post(url, body());
        samples.push(performance.now() - s);
        if (r.status !== 200) throw new Error(`search answered ${r.status}`);
        const { timings } = JSON.parse(r.body) as { timings: Record<keyof typeof parts | 'totalMs', number> };
        server.push(timings.totalMs);
        for (const part of Object.keys(parts) as (keyof typeof parts)[]) parts[part].push(timings[part]);
      }
      log(`load: ${CONNECTIONS} clients for ${DURATION} s (autocannon)`);
      load = await loadPhase(url, DURATION, body);
    } finally {
      await cold.stop();
    }
    const machineLoad = loadavg()[0]!;
    log('restart with the model in the server thread');
    // The baseline runs the model in the server thread, as a Lambda container does.
    const restart = await startAndAsk(['--model-workers', '0']);
    let baseline: AutocannonResult;
    try {
      log(`baseline load, model in the server thread: ${CONNECTIONS} clients for ${BASELINE_DURATION} s`);
      await new Promise((resolve) => setTimeout(resolve, WARM_PAUSE_MS));
      baseline = await loadPhase(restart.url, BASELINE_DURATION, body);
    } finally {
      await restart.stop();
    }

    const errors = load.errors + load.timeouts + load.non2xx;
    printTable(
      ['measure', 'value'],
      [
        ['index', `${CHUNKS} chunks, 768-d, 2 segments, directory store; int8 BERT-base-sized random model`],
        ['cold start (process start → first answer)', `${round(coldStartMs)} ms`],
        ['restart, model in the server thread (process start → first answer)', `${round(restart.ms)} ms`],
        [
          'warm /v1/search k=50, one client: p50 / p99',
          `${round(quantile(samples, 0.5))} / ${round(quantile(samples, 0.99))} ms`,
        ],
        [
          '  of which server time: p50 / p99',
          `${round(quantile(server, 0.5))} / ${round(quantile(server, 0.99))} ms`,
        ],
        [
          '  server time by part, p50: encode / search / evidence and audit',
          `${round(quantile(parts.encodeMs, 0.5))} / ${round(quantile(parts.searchMs, 0.5))} / ${round(quantile(parts.evidenceMs, 0.5))} ms`,
        ],
        [`load: ${CONNECTIONS} clients × ${DURATION} s: requests/s`, round(load.requests.average, 1)],
        ['load: latency p50 / p99', `${load.latency.p50} / ${load.latency.p99} ms`],
        ['load: errors (errors + timeouts + non-2xx)', errors],
        [
          `baseline, model in the server thread: ${CONNECTIONS} clients × ${BASELINE_DURATION} s: requests/s, p99`,
          `${round(baseline.requests.average, 1)}, ${baseline.latency.p99} ms (errors ${baseline.errors + baseline.timeouts + baseline.non2xx})`,
        ],
        ['load requests/s vs the baseline', round(load.requests.average / baseline.requests.average, 2)],
        ['machine load average (1 min) after the load phase, 2 cores', round(machineLoad, 1)],
      ],
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'query',
        p50_ms: round(quantile(samples, 0.5)),
        p99_ms: round(quantile(samples, 0.99)),
        cold_start_ms: round(coldStartMs),
        load_rps: round(load.requests.average, 1),
        load_p99_ms: load.latency.p99,
        errors,
        load_rps_vs_in_thread: round(load.requests.average / baseline.requests.average, 2),
      })}\n`,
    );
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
}
