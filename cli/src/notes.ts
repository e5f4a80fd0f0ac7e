import { readFile } from 'node:fs/promises';
import { type EncoderLogger, loadBundleTokenizer } from '@cohort/encoder';
import {
  classifyCondition,
  NoteChunker,
  type NoteFormat,
  type PreparedNote,
  readNotesFromFile,
} from '@cohort/notes';
import { type Command, Option } from 'commander';
import { parsePositiveInt, printJson } from './output.ts';

/** Adds `cohort notes inspect` and `cohort notes context` to the program. */
export function registerNotesCommands(program: Command, logger: () => EncoderLogger): void {
  const notes = program.command('notes').description('read, split, chunk and tag clinical notes');

  notes
    .command('inspect')
    .description(
      'for each note in FILE: its sections, sentences and chunks with offsets, token counts and assertion scopes; quarantined records with their reasons',
    )
    .argument(
      '<file>',
      'MIMIC-III/IV CSV, FHIR DocumentReference NDJSON, JSONL or plain text, optionally gzipped',
    )
    .addOption(
      new Option('--format <format>', 'input format (default: detected)').choices([
        'mimic3',
        'mimic4',
        'fhir',
        'jsonl',
        'text',
      ]),
    )
    .option('--json', 'one JSON line per note and per quarantined record', false)
    .option(
      '--model <bundle>',
      "count tokens with this bundle's tokenizer (default: the ClinicalBERT vocabulary, cased)",
    )
    .option('--max-tokens <n>', 'most tokens per chunk, [CLS] and [SEP] included', parsePositiveInt, 128)
    .action(
      async (
        file: string,
        opts: { format?: NoteFormat; json: boolean; model?: string; maxTokens: number },
      ) => {
        const log = logger();
        const tokenizer = opts.model ? await loadBundleTokenizer(opts.model) : undefined;
        const chunker = await NoteChunker.create({ tokenizer, maxTokens: opts.maxTokens });
        let notesRead = 0;
        let quarantined = 0;
        let chunks = 0;
        for await (const item of readNotesFromFile(file, { format: opts.format ?? 'auto' })) {
          if (item.kind === 'quarantined') {
            quarantined++;
            if (opts.json) printJson({ quarantined: item.quarantined });
            else
              process.stdout.write(
                `quarantined ${describeSource(item.quarantined.source)}: ${item.quarantined.reason}\n`,
              );
            continue;
          }
          notesRead++;
          const prepared = await chunker.prepare(item.note);
          chunks += prepared.chunks.length;
          if (opts.json) printJson(noteJson(prepared));
          else process.stdout.write(noteText(prepared));
        }
        log.info('notes inspected', { file, notes: notesRead, chunks, quarantined });
      },
    );

  notes
    .command('context')
    .description(
      'assertion status of a condition in a sentence; each input line "sentence<TAB>condition", one JSON line out per line: {"negated","hypothetical","historical","experiencer"}',
    )
    .requiredOption('--tsv <file>', 'input file ("-" for standard input)')
    .action(async (opts: { tsv: string }) => {
      const text = opts.tsv === '-' ? await readStdin() : await readFile(opts.tsv, 'utf8');
      const lines = text.split(/\r?\n/);
      if (lines.at(-1) === '') lines.pop();
      lines.forEach((line, i) => {
        const tab = line.indexOf('\t');
        if (tab < 0) throw new Error(`${opts.tsv}:${i + 1}: expected "sentence<TAB>condition"`);
        const result = classifyCondition(line.slice(0, tab), line.slice(tab + 1).split('\t')[0]!);
        printJson({
          negated: result.negated,
          hypothetical: result.hypothetical,
          historical: result.historical,
          experiencer: result.experiencer,
        });
      });
    });
}

/** The `--json` line of a note: identifiers, offsets and counts (no text). */
export function noteJson({ note, sections, sentences, chunks }: PreparedNote) {
  return {
    noteId: note.noteId,
    patientId: note.patientId,
    ...(note.encounterId ? { encounterId: note.encounterId } : {}),
    ...(note.noteType ? { noteType: note.noteType } : {}),
    ...(note.noteDate ? { noteDate: note.noteDate } : {}),
    chars: note.text.length,
    sections: sections.map((s) => ({
      category: s.category,
      start: s.start,
      bodyStart: s.bodyStart,
      end: s.end,
    })),
    sentences: sentences.map((s) => ({ section: s.section, start: s.start, end: s.end })),
    chunks: chunks.map((c) => ({
      section: c.section,
      start: c.start,
      end: c.end,
      tokens: c.tokens,
      assertions: c.assertions.map((a) => ({ kind: a.kind, start: a.start, end: a.end })),
      ...(c.flags.length ? { flags: c.flags } : {}),
    })),
  };
}

function noteText({ note, sections, sentences, chunks }: PreparedNote): string {
  const lines = [
    `note ${note.noteId} patient ${note.patientId}${note.noteType ? ` (${note.noteType})` : ''}: ${note.text.length} chars, ${sections.length} sections, ${sentences.length} sentences, ${chunks.length} chunks`,
  ];
  sections.forEach((s, index) => {
    lines.push(`  section ${s.category} [${s.start}, ${s.end})${s.title ? ` "${s.title.trim()}"` : ''}`);
    for (const t of sentences.filter((t) => t.sectionIndex === index))
      lines.push(`    sentence [${t.start}, ${t.end})`);
  });
  for (const c of chunks) {
    const preview = note.text.slice(c.start, c.end).replace(/\s+/g, ' ');
    lines.push(
      `  chunk ${c.section} [${c.start}, ${c.end}) ${c.tokens} tokens${c.flags.length ? ` ${c.flags.join(',')}` : ''}: ${preview.length > 100 ? `${preview.slice(0, 100)}…` : preview}`,
    );
    for (const a of c.assertions)
      lines.push(
        `    ${a.kind} [${a.start}, ${a.end}): ${note.text.slice(a.start, a.end).replace(/\s+/g, ' ')}`,
      );
  }
  return `${lines.join('\n')}\n`;
}

function describeSource(source: { key: string; row?: number; line?: number }): string {
  return `${source.key}${source.row !== undefined ? ` row ${source.row}` : ''}${source.line !== undefined ? ` line ${source.line}` : ''}`;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
