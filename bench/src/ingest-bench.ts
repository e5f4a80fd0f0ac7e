import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectFiles, LocalFileSource, localObjectRef, makeJobSpec, runJob } from '@cohort/embed';
import {
  BERT_BASE_CONFIG,
  importCheckpoint,
  seededUniform,
  WorkerEncoder,
  writeRandomBertCheckpoint,
} from '@cohort/encoder';
import { LocalDirectoryStore } from '@cohort/index';
import { NoteChunker, readNotesFromFile } from '@cohort/notes';
import { printTable, round } from './stats.ts';

const WORK = fileURLToPath(new URL('../.work/', import.meta.url));
const THREADS = Number(process.env['BENCH_THREADS'] ?? 2);
const NOTES = Number(process.env['BENCH_INGEST_NOTES'] ?? 2000);
const PER_FILE = 100;
const PART_CHUNKS = 128;
const ENCODE_BLOCK = 256;
const ROUNDS = 4;

const SENTENCES = [
  'Patient denies chest pain or shortness of breath at rest.',
  'New-onset atrial fibrillation after CABG, started on apixaban 5 mg BID and metoprolol.',
  'Mother had breast cancer at age 45; father with coronary artery disease.',
  'History of type 2 diabetes mellitus, on metformin 1000 mg twice daily.',
  'No evidence of pneumonia on chest x-ray; mild bibasilar atelectasis.',
  'Discharged home in stable condition with outpatient cardiology follow-up.',
  'Creatinine rose from 1.1 to 2.3 mg/dL over 48 hours, attributed to contrast nephropathy.',
  'Echocardiogram showed an ejection fraction of 35% with global hypokinesis.',
  'Rule out pulmonary embolism; CTA chest ordered and negative.',
  'She reports intermittent claudication of the left calf after two blocks.',
];
// One section of a few sentences: about one chunk per note, so that 2,000 notes stay quick to encode.
const SECTIONS = ['HOSPITAL COURSE:'];

/** Writes NOTES synthetic notes (seeded; no patient data) as JSONL files; returns the directory. */
async function writeNotes(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const r = seededUniform(42);
  const pick = () => SENTENCES[Math.floor(r() * SENTENCES.length)]!;
  for (let f = 0; f * PER_FILE < NOTES; f++) {
    const lines: string[] = [];
    for (let n = f * PER_FILE; n < Math.min(NOTES, (f + 1) * PER_FILE); n++) {
      const text = SECTIONS.map(
        (h) => `${h}\n${Array.from({ length: 3 + Math.floor(r() * 4) }, pick).join(' ')}`,
      ).join('\n\n');
      lines.push(
        JSON.stringify({
          noteId: `n${n}`,
          patientId: `p${n % 400}`,
          noteType: 'Discharge summary',
          noteDate: '2024-03-01',
          text,
        }),
      );
    }
    await writeFile(join(dir, `notes-${String(f).padStart(3, '0')}.jsonl`), `${lines.join('\n')}\n`);
  }
}

/**
 * Ingest benchmark: the whole embed job (read, parse, chunk, tokenize, encode, HNSW build, upload,
 * commit) on the CPU with a BERT-base-sized random int8 model over generated notes, against the
 * encoder alone on the same chunks in the same blocks (all queued at once, so it never waits).
 * Efficiency = pipeline chunks/s ÷ encoder chunks/s (target ≥ 0.9: the stages around the encoder
 * hide behind it). The notes are split into rounds, each measured both ways in alternating order,
 * because machine load drifts over minutes. The encoder runs on a worker thread in both (as in the
 * job); the stage table shows busy time per stage, whose sum exceeds the wall time when they overlap.
 */
export async function runIngestBench(): Promise<void> {
  const log = (m: string) => process.stderr.write(`[bench ingest] ${m}\n`);
  const checkpoint = join(WORK, 'bert-base-random');
  const bundle = join(WORK, 'ingest-bundle');
  if (!existsSync(join(checkpoint, 'model.safetensors'))) {
    log('writing a BERT-base-sized random checkpoint (seeded; about 440 MB)');
    await writeRandomBertCheckpoint(checkpoint, { config: BERT_BASE_CONFIG, std: 0.02 });
  }
  if (!existsSync(join(bundle, 'model.json'))) {
    log('importing it (int8)');
    await importCheckpoint(checkpoint, bundle, { variants: ['int8'], overwrite: true });
  }
  const notesDir = join(WORK, 'ingest-notes');
  log(`generating ${NOTES} notes`);
  await writeNotes(notesDir);
  // The job's encoder runs on a worker thread, as in `cohort ingest` and the batch job.
  const encoder = await WorkerEncoder.start(bundle, { provider: 'cpu', variant: 'int8', threads: THREADS });
  const chunker = await NoteChunker.create({
    tokenizer: encoder.tokenizer,
    maxTokens: encoder.info.maxLength,
  });
  try {
    // Rounds of notes, each timed both ways in alternating order (A B, B A, …), so that drift in the
    // machine's load affects both measurements alike.
    const files = await collectFiles([notesDir]);
    const rounds = Array.from({ length: ROUNDS }, (_, r) => files.filter((_, i) => i % ROUNDS === r));
    const indexDir = join(WORK, 'ingest-index');
    await rm(indexDir, { recursive: true, force: true });
    const store = new LocalDirectoryStore(indexDir, { fsync: false });
    let encoderSeconds = 0;
    let encoderChunks = 0;
    const total = {
      chunks: 0,
      notes: 0,
      parts: 0,
      read: 0,
      encode: 0,
      build: 0,
      upload: 0,
      commit: 0,
      wait: 0,
      wall: 0,
    };
    // Warm the session (first runs allocate) so that no measurement pays for it.
    await encoder.embedIds([[101, 1000, 102]]);
    for (const [r, roundFiles] of rounds.entries()) {
      // Encoder alone: the same chunks, tokenized up front, in the same blocks, all queued at once.
      const ids: number[][] = [];
      for (const file of roundFiles) {
        for await (const item of readNotesFromFile(file)) {
          if (item.kind !== 'note') continue;
          const { chunks } = await chunker.prepare(item.note);
          const tokens = await encoder.tokenize(chunks.map((c) => item.note.text.slice(c.start, c.end)));
          ids.push(...tokens.map((t) => t.ids));
        }
      }
      const encoderAlone = async () => {
        const e0 = performance.now();
        const blocks: Promise<unknown>[] = [];
        for (let i = 0; i < ids.length; i += ENCODE_BLOCK)
          blocks.push(encoder.embedIds(ids.slice(i, i + ENCODE_BLOCK)));
        await Promise.all(blocks);
        encoderSeconds += (performance.now() - e0) / 1000;
        encoderChunks += ids.length;
      };
      const pipelineRun = async () => {
        const refs = await Promise.all(roundFiles.map(localObjectRef));
        const report = await runJob(makeJobSpec(indexDir, refs), {
          store,
          source: new LocalFileSource(),
          encoder,
          chunker,
          partChunks: PART_CHUNKS,
          encodeBlock: ENCODE_BLOCK,
          workDir: join(WORK, 'ingest-work'),
        });
        const t = report.timings;
        total.chunks += report.chunks;
        total.notes += report.notes;
        total.parts += report.parts;
        total.read += t.read;
        total.encode += t.encode;
        total.build += t.build;
        total.upload += t.upload;
        total.commit += t.commit;
        total.wait += t.encodeWaitingForInput;
        total.wall += t.wall;
      };
      log(`round ${r + 1}/${ROUNDS}: ${ids.length} chunks`);
      if (r % 2 === 0) {
        await encoderAlone();
        await pipelineRun();
      } else {
        await pipelineRun();
        await encoderAlone();
      }
    }
    const encoderOnly = encoderChunks / encoderSeconds;
    const pipeline = total.chunks / total.wall;
    const efficiency = pipeline / encoderOnly;
    const report = { notes: total.notes, chunks: total.chunks, parts: total.parts };
    const t = {
      read: round(total.read, 3),
      encode: round(total.encode, 3),
      build: round(total.build, 3),
      upload: round(total.upload, 3),
      commit: round(total.commit, 3),
      encodeWaitingForInput: round(total.wait, 3),
      wall: round(total.wall, 3),
    };
    printTable(
      ['stage', 'busy s', 'share of wall'],
      [
        ['read + parse + chunk + tokenize', t.read, round(t.read / t.wall)],
        ['encode', t.encode, round(t.encode / t.wall)],
        ['HNSW build (worker thread)', t.build, round(t.build / t.wall)],
        ['upload (texts, segments)', t.upload, round(t.upload / t.wall)],
        ['commit', t.commit, round(t.commit / t.wall)],
        ['encoder waiting for input', t.encodeWaitingForInput, round(t.encodeWaitingForInput / t.wall)],
        [
          'sum of stages',
          round(t.read + t.encode + t.build + t.upload + t.commit, 3),
          round((t.read + t.encode + t.build + t.upload + t.commit) / t.wall),
        ],
        ['wall', t.wall, 1],
      ],
    );
    process.stdout.write('\n');
    printTable(
      ['measure', 'value'],
      [
        ['notes / chunks', `${report.notes} / ${report.chunks}`],
        ['chunks/s, whole pipeline', round(pipeline, 1)],
        ['chunks/s, encoder alone (same chunks, same blocks)', round(encoderOnly, 1)],
        ['rounds, alternating encoder alone and pipeline (A B, B A, …)', ROUNDS],
        ['efficiency (target ≥ 0.9)', round(efficiency, 3)],
        ['parts committed', report.parts],
        ['threads', THREADS],
      ],
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'ingest',
        chunks_per_s: round(pipeline, 1),
        encoder_only_chunks_per_s: round(encoderOnly, 1),
        efficiency: round(efficiency, 3),
        notes: report.notes,
        chunks: report.chunks,
        threads: THREADS,
        stage_seconds: {
          read: t.read,
          encode: t.encode,
          build: t.build,
          upload: t.upload,
          commit: t.commit,
          wall: t.wall,
        },
      })}\n`,
    );
  } finally {
    await encoder.close();
  }
}
