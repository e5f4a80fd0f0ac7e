/**
 * Helpers for embed pipeline tests: small generated note files in several formats (with records
 * that must be quarantined), EventBridge S3 events as S3 produces them, and index inspection.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SQSRecord } from 'aws-lambda';
import { seededUniform } from '../../layers/encoder/src/fixture.ts';
import { IndexReader } from '../../layers/index/src/reader.ts';
import type { ObjectStore } from '../../layers/index/src/store/types.ts';

const SENTENCES = [
  'Patient denies chest pain or shortness of breath.',
  'New-onset atrial fibrillation after CABG, started on apixaban 5 mg BID.',
  'Mother had breast cancer at age 45.',
  'History of type 2 diabetes mellitus, on metformin.',
  'No evidence of pneumonia on chest x-ray.',
  'Discharged home in stable condition.',
  'Creatinine rose from 1.1 to 2.3 mg/dL over 48 hours.',
  'Echocardiogram showed an ejection fraction of 35%.',
];

/** A synthetic note text of a few sections (no patient data), chosen by a seeded generator. */
export function noteText(seed: number, sentences = 6): string {
  const r = seededUniform(seed);
  const pick = () => SENTENCES[Math.floor(r() * SENTENCES.length)]!;
  const body = (n: number) => Array.from({ length: n }, pick).join(' ');
  const half = Math.max(1, Math.floor(sentences / 2));
  return `HISTORY OF PRESENT ILLNESS:\n${body(half)}\n\nHOSPITAL COURSE:\n${body(sentences - half)}\n`;
}

/** A JSONL line of one note. */
export function jsonlNote(noteId: string, patientId: string, text: string): string {
  return JSON.stringify({ noteId, patientId, noteType: 'Discharge summary', noteDate: '2024-01-02', text });
}

/** The note files {@link writeNoteSet} wrote, and what a clean run must index and quarantine. */
export interface NoteSet {
  readonly root: string;
  readonly files: string[];
  /** Note ids that must be indexed. */
  readonly noteIds: string[];
  /** Quarantine reasons expected (one per bad record or file). */
  readonly quarantineReasons: string[];
}

/**
 * Writes a small set of note files under `root`: `jsonl` files of `notesPerFile` notes (one with a
 * record missing its text), plain-text notes in the `patients/<p>/notes/<n>.txt` layout, and one
 * binary file; seeded, so the same arguments give the same bytes.
 */
export async function writeNoteSet(
  root: string,
  options: { files?: number; notesPerFile?: number; textNotes?: number; seed?: number } = {},
): Promise<NoteSet> {
  const files: string[] = [];
  const noteIds: string[] = [];
  const seed = options.seed ?? 1;
  await mkdir(root, { recursive: true });
  for (let f = 0; f < (options.files ?? 2); f++) {
    const lines: string[] = [];
    for (let n = 0; n < (options.notesPerFile ?? 3); n++) {
      const id = `j${f}-n${n}`;
      lines.push(jsonlNote(id, `p${n % 2}`, noteText(seed * 1000 + f * 100 + n)));
      noteIds.push(id);
    }
    if (f === 0) lines.push(JSON.stringify({ noteId: 'bad-1', patientId: 'p9' }));
    const path = join(root, `batch-${f}.jsonl`);
    await writeFile(path, `${lines.join('\n')}\n`);
    files.push(path);
  }
  for (let t = 0; t < (options.textNotes ?? 2); t++) {
    const dir = join(root, 'patients', `tp${t}`, 'notes');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `t${t}.txt`);
    await writeFile(path, noteText(seed * 7777 + t, 4));
    files.push(path);
    noteIds.push(`t${t}`);
  }
  const binary = join(root, 'scan.bin');
  await writeFile(binary, Buffer.from([0, 1, 2, 3, 0, 255, 254, 0, 0, 0, 7, 8]));
  files.push(binary);
  return {
    root,
    files: files.sort(),
    noteIds: noteIds.sort(),
    quarantineReasons: ['binary content', 'missing text'],
  };
}

/** Live chunks per note id over the whole index (tombstones applied), and the reader's stats. */
export async function chunksPerNote(
  store: ObjectStore,
  cacheDir: string,
): Promise<{ perNote: Map<string, number>; notes: number; chunks: number }> {
  const reader = await IndexReader.open(store, { cacheDir });
  const stats = reader.stats();
  const perNote = new Map<string, number>();
  const manifest = reader.manifest;
  const tombstones = new Map((manifest?.tombstones ?? []).map((t) => [t.noteId, t.version]));
  for (const entry of manifest?.segments ?? []) {
    const segment = reader.segments.find((s) => s.descriptor.id === entry.id)!;
    for (let i = 0; i < segment.count; i++) {
      const c = segment.chunk(i);
      const dead = tombstones.get(c.noteId);
      if (dead !== undefined && entry.addedIn < dead) continue;
      perNote.set(c.noteId, (perNote.get(c.noteId) ?? 0) + 1);
    }
  }
  return { perNote, notes: stats.notes, chunks: stats.chunks };
}

/** The EventBridge event S3 emits for an upload or a delete. */
export function s3Event(
  type: 'Object Created' | 'Object Deleted',
  object: {
    bucket: string;
    key: string;
    size?: number;
    etag?: string;
    versionId?: string;
    sequencer: string;
  },
  time = '2026-01-01T00:00:00Z',
): Record<string, unknown> {
  return {
    version: '0',
    id: `${object.key}-${object.sequencer}`,
    'detail-type': type,
    source: 'aws.s3',
    account: '111122223333',
    time,
    region: 'us-east-1',
    resources: [`arn:aws:s3:::${object.bucket}`],
    detail: {
      version: '0',
      bucket: { name: object.bucket },
      object: {
        key: object.key,
        ...(object.size === undefined ? {} : { size: object.size }),
        ...(object.etag === undefined ? {} : { etag: object.etag.replace(/"/g, '') }),
        ...(object.versionId === undefined ? {} : { 'version-id': object.versionId }),
        sequencer: object.sequencer,
      },
      'request-id': 'REQ',
      requester: '111122223333',
      reason: type === 'Object Created' ? 'PutObject' : 'DeleteObject',
      ...(type === 'Object Deleted' ? { 'deletion-type': 'Permanently Deleted' } : {}),
    },
  };
}

/** An SQS record carrying one EventBridge event (what the Lambda's event source delivers). */
export function sqsRecord(messageId: string, event: unknown): SQSRecord {
  return {
    messageId,
    receiptHandle: `rh-${messageId}`,
    body: typeof event === 'string' ? event : JSON.stringify(event),
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: '0',
      SenderId: 'events',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:111122223333:q',
    awsRegion: 'us-east-1',
  };
}

/** A monotonically increasing S3-like sequencer (hex, 18 digits) from a counter. */
export function sequencer(n: number): string {
  return n.toString(16).toUpperCase().padStart(18, '0');
}
