import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NoteChunker, readNotes } from '@cohort/notes';
import { printTable, round } from './stats.ts';

const NOTES = fileURLToPath(new URL('../../test/fixtures/notes/', import.meta.url));
const COUNT = Number(process.env['BENCH_NOTES'] ?? 10_000);

/**
 * Notes benchmark: parse (JSONL reader) + sections + sentences + chunks + tokenize + assertion tags
 * on a corpus of {@link COUNT} notes made from the example notes, on one core (the tokenizer's
 * thread pool is held to one thread). Reports notes/s, chunks/s and MB/s.
 */
export async function runNotesBench(): Promise<void> {
  // The tokenizer's Rust thread pool reads these when it first starts: one core, as the issue asks.
  process.env['RAYON_NUM_THREADS'] = '1';
  process.env['TOKENIZERS_PARALLELISM'] = 'false';
  const log = (m: string) => process.stderr.write(`[bench notes] ${m}\n`);
  const examples: string[] = [];
  for (const file of (await readdir(NOTES)).filter((f) => f !== 'SOURCE.md').sort()) {
    examples.push(await readFile(join(NOTES, file), 'utf8'));
  }
  // Each generated note is an example note with its own ids; a note is made of two examples in
  // turn so that lengths vary like a real corpus (short progress notes to long summaries).
  const lines: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const text =
      i % 3 === 0
        ? `${examples[i % examples.length]}\n\n${examples[(i * 7 + 3) % examples.length]}`
        : examples[i % examples.length]!;
    lines.push(JSON.stringify({ noteId: `n${i}`, patientId: `p${i % 997}`, noteType: 'example', text }));
  }
  const corpus = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
  log(`${COUNT} notes, ${round(corpus.byteLength / 1e6, 1)} MB of JSONL`);
  const chunker = await NoteChunker.create();

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let notes = 0;
  let chunks = 0;
  let quarantined = 0;
  let tokens = 0;
  async function* body() {
    for (let i = 0; i < corpus.byteLength; i += 1 << 20) yield corpus.subarray(i, i + (1 << 20));
  }
  for await (const item of readNotes({ body: body(), key: 'bench/corpus.jsonl' })) {
    if (item.kind === 'quarantined') {
      quarantined++;
      continue;
    }
    const prepared = await chunker.prepare(item.note);
    notes++;
    chunks += prepared.chunks.length;
    for (const c of prepared.chunks) tokens += c.tokens;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // CPU seconds per wall second: about 1 when the work really ran on one core.
  const coresUsed = (cpu.user + cpu.system) / 1e6 / seconds;
  printTable(
    ['measure', 'value'],
    [
      ['notes', notes],
      ['quarantined', quarantined],
      ['chunks', chunks],
      ['mean tokens per chunk', round(tokens / chunks, 1)],
      ['seconds', round(seconds, 2)],
      ['notes/s', round(notes / seconds)],
      ['chunks/s', round(chunks / seconds)],
      ['MB/s', round(corpus.byteLength / 1e6 / seconds, 2)],
      ['cores used (CPU time / wall time)', round(coresUsed, 2)],
    ],
  );
  process.stdout.write(
    `${JSON.stringify({
      bench: 'notes',
      notes_per_s: round(notes / seconds),
      chunks_per_s: round(chunks / seconds),
      mb_per_s: round(corpus.byteLength / 1e6 / seconds, 2),
      notes,
      chunks,
      quarantined,
      cores_used: round(coresUsed, 2),
    })}\n`,
  );
}
