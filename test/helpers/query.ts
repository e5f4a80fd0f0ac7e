/**
 * Test indexes for the query API whose scores are known in advance: the query is embedded with the
 * real (tiny, random) model, and each chunk's vector is built to have an exact, chosen cosine with
 * it (`scored`), so rankings, ties, thresholds and filters can be asserted although the model's own
 * rankings are meaningless. Note texts go to the index's NoteTextStore as the embed job stores them.
 */
import { join } from 'node:path';
import { Encoder } from '../../layers/encoder/src/encoder.ts';
import { seededUniform } from '../../layers/encoder/src/fixture.ts';
import type { ChunkAssertion, ChunkMeta } from '../../layers/index/src/segment/types.ts';
import type { ObjectStore } from '../../layers/index/src/store/types.ts';
import { NoteTextStore } from '../../layers/index/src/texts.ts';
import { IndexWriter } from '../../layers/index/src/writer.ts';

/** The query every test index is scored against. */
export const TEST_QUERY = 'new onset atrial fibrillation after CABG treated with apixaban';

/** A unit vector whose cosine with the unit vector `q` is exactly `score` (up to float32 rounding). */
export function scored(q: Float32Array, score: number, seed: number): Float32Array {
  const r = seededUniform(seed);
  const u = new Float32Array(q.length);
  for (let i = 0; i < u.length; i++) u[i] = r() * 2 - 1;
  // Gram-Schmidt: remove the q component, normalize.
  let dot = 0;
  for (let i = 0; i < u.length; i++) dot += u[i]! * q[i]!;
  let norm = 0;
  for (let i = 0; i < u.length; i++) {
    u[i] = u[i]! - dot * q[i]!;
    norm += u[i]! * u[i]!;
  }
  norm = Math.sqrt(norm);
  const rest = Math.sqrt(Math.max(0, 1 - score * score));
  const v = new Float32Array(q.length);
  for (let i = 0; i < v.length; i++) v[i] = score * q[i]! + (rest * u[i]!) / norm;
  return v;
}

/** One chunk of a test note: its text (found in the note text) and its chosen score. */
export interface TestChunk {
  readonly text: string;
  readonly score: number;
  readonly section?: string;
  /** Assertion kind covering the whole chunk. */
  readonly assertion?: ChunkAssertion['kind'];
  /** Seed of the vector's orthogonal part; equal seeds and scores give identical vectors (exact ties). */
  readonly seed?: number;
}

/** A test note. */
export interface TestNote {
  readonly noteId: string;
  readonly patientId: string;
  readonly noteType?: string;
  readonly noteDate?: string;
  readonly chunks: readonly TestChunk[];
  /** Leave its text out of the NoteTextStore (a snippet-less note). Default false. */
  readonly noText?: boolean;
}

/** Writes notes as one segment (and their texts) into an index store; returns the chunk count. */
export async function writeTestIndex(
  store: ObjectStore,
  options: {
    readonly q: Float32Array;
    readonly fingerprint: string;
    readonly notes: readonly TestNote[];
    readonly workDir: string;
    readonly changeId?: string;
  },
): Promise<number> {
  const writer = new IndexWriter(store, {
    modelFingerprint: options.fingerprint,
    dims: options.q.length,
    workDir: options.workDir,
    M: 8,
    efConstruction: 50,
  });
  const texts = new NoteTextStore(store);
  const chunks: ChunkMeta[] = [];
  const vectors: Float32Array[] = [];
  let seed = 1;
  for (const note of options.notes) {
    const text = note.chunks.map((c) => c.text).join('\n\n');
    let at = 0;
    for (const c of note.chunks) {
      const start = text.indexOf(c.text, at);
      const end = start + c.text.length;
      at = end;
      chunks.push({
        noteId: note.noteId,
        patientId: note.patientId,
        section: c.section ?? 'hospital_course',
        start,
        end,
        tokens: Math.ceil(c.text.length / 4) + 2,
        assertions: c.assertion ? [{ kind: c.assertion, start, end }] : [],
        flags: [],
        ...(note.noteType ? { noteType: note.noteType } : {}),
        ...(note.noteDate ? { noteDate: note.noteDate } : {}),
      });
      vectors.push(scored(options.q, c.score, c.seed ?? seed++ * 7919));
    }
    if (!note.noText) await texts.put(note.noteId, undefined, text);
  }
  await writer.addSegment({ vectors, chunks }, { changeId: options.changeId ?? 'test-segment-1' });
  return chunks.length;
}

/** The query's unit vector and the model's fingerprint, from the bundle the service will load. */
export async function embedTestQuery(
  bundle: string,
  query = TEST_QUERY,
): Promise<{ q: Float32Array; fingerprint: string }> {
  const encoder = await Encoder.load(bundle, { provider: 'cpu', threads: 1 });
  try {
    const { embeddings } = await encoder.embed([query]);
    return { q: embeddings[0]!, fingerprint: encoder.info.fingerprint };
  } finally {
    await encoder.close();
  }
}

/** Low-scoring filler patients (two notes each), so the index is more than the interesting cases. */
export function fillerNotes(count: number): TestNote[] {
  return Array.from({ length: count }, (_, i) => ({
    noteId: `filler-${i}`,
    patientId: `f${String(i).padStart(3, '0')}`,
    noteType: 'progress',
    noteDate: '2022-01-01',
    chunks: [
      { text: `Routine follow-up visit number ${i}. Vitals stable.`, score: 0.1 + (i % 40) / 100 },
      { text: `Plan: continue current medications, return in ${i + 1} weeks.`, score: 0.05 },
    ],
  }));
}

/**
 * The standard cohort of the query tests (scores against {@link TEST_QUERY}):
 * - p1: best 0.95 (discharge, 2020-03-01) and a second note at 0.80
 * - p2: 0.97 but negated ("No atrial fibrillation")
 * - p3: 0.90 (radiology, impression, 2021-06-01)
 * - p4: 0.92 in a family-history scope
 * - p5: 0.85 exactly tied with p6, plus a second note at 0.84 (wins the tie)
 * - p6: 0.85 only
 * - p7: 0.70, its note text not stored (snippet null)
 * - p8: 0.88 hypothetical ("rule out")
 * - p9: 0.60 historical ("history of"), which counts in affirmed mode
 */
export function standardNotes(): TestNote[] {
  return [
    {
      noteId: 'n1',
      patientId: 'p1',
      noteType: 'discharge',
      noteDate: '2020-03-01',
      chunks: [
        {
          text: 'Routine post-operative care. New-onset atrial fibrillation after CABG. Started apixaban 5 mg BID.',
          score: 0.95,
        },
        { text: 'Discharged home in stable condition.', score: 0.3, section: 'discharge_condition' },
      ],
    },
    {
      noteId: 'n2',
      patientId: 'p1',
      noteType: 'progress',
      noteDate: '2020-03-05',
      chunks: [{ text: 'Rate controlled atrial fibrillation on apixaban.', score: 0.8 }],
    },
    {
      noteId: 'n3',
      patientId: 'p2',
      noteType: 'discharge',
      noteDate: '2020-04-01',
      chunks: [
        { text: 'No atrial fibrillation on telemetry after CABG.', score: 0.97, assertion: 'negated' },
      ],
    },
    {
      noteId: 'n4',
      patientId: 'p3',
      noteType: 'radiology',
      noteDate: '2021-06-01',
      chunks: [
        {
          text: 'Left atrial enlargement. Findings consistent with atrial fibrillation.',
          score: 0.9,
          section: 'impression',
        },
      ],
    },
    {
      noteId: 'n5',
      patientId: 'p4',
      noteType: 'discharge',
      noteDate: '2020-05-01',
      chunks: [
        {
          text: 'Mother had atrial fibrillation and a stroke.',
          score: 0.92,
          section: 'family_history',
          assertion: 'family',
        },
      ],
    },
    {
      noteId: 'n6',
      patientId: 'p5',
      noteType: 'discharge',
      noteDate: '2019-01-01',
      chunks: [
        { text: 'Paroxysmal atrial fibrillation post CABG, apixaban started.', score: 0.85, seed: 4242 },
      ],
    },
    {
      noteId: 'n7',
      patientId: 'p5',
      noteType: 'progress',
      noteDate: '2019-01-03',
      chunks: [{ text: 'Atrial fibrillation resolved on apixaban.', score: 0.84 }],
    },
    {
      noteId: 'n8',
      patientId: 'p6',
      noteType: 'discharge',
      noteDate: '2019-02-01',
      chunks: [
        { text: 'Paroxysmal atrial fibrillation post CABG, apixaban started.', score: 0.85, seed: 4242 },
      ],
    },
    {
      noteId: 'n9',
      patientId: 'p7',
      noteType: 'discharge',
      noteDate: '2018-01-01',
      noText: true,
      chunks: [{ text: 'Atrial fibrillation noted.', score: 0.7 }],
    },
    {
      noteId: 'n10',
      patientId: 'p8',
      noteType: 'ed',
      noteDate: '2020-07-01',
      chunks: [
        {
          text: 'Rule out atrial fibrillation; start apixaban if confirmed.',
          score: 0.88,
          assertion: 'hypothetical',
        },
      ],
    },
    {
      noteId: 'n11',
      patientId: 'p9',
      noteType: 'discharge',
      noteDate: '2020-08-01',
      chunks: [
        { text: 'History of atrial fibrillation after CABG in 2010.', score: 0.6, assertion: 'historical' },
      ],
    },
    ...fillerNotes(30),
  ];
}

/** Where a test index lives: `root/<name>` (store) and `root/<name>-work`. */
export function testIndexPaths(root: string, name: string) {
  return {
    dir: join(root, name),
    workDir: join(root, `${name}-work`),
    cacheDir: join(root, `${name}-cache`),
  };
}

/** A built test index and the bundle to query it with. */
export interface TestIndex {
  readonly bundle: string;
  readonly q: Float32Array;
  readonly fingerprint: string;
  readonly indexDir: string;
  readonly cacheDir: string;
  readonly auditDir: string;
  readonly workDir: string;
}

/** Builds the tiny model bundle and the {@link standardNotes} index in a directory store under `root`. */
export async function buildTestIndex(root: string, name = 'index'): Promise<TestIndex> {
  const { tinyBundle } = await import('./encoder.ts');
  const { LocalDirectoryStore } = await import('../../layers/index/src/store/local.ts');
  const bundle = await tinyBundle(root, { variants: ['fp32', 'int8'] });
  const { q, fingerprint } = await embedTestQuery(bundle);
  const paths = testIndexPaths(root, name);
  const store = new LocalDirectoryStore(paths.dir, { fsync: false });
  await writeTestIndex(store, { q, fingerprint, notes: standardNotes(), workDir: paths.workDir });
  return {
    bundle,
    q,
    fingerprint,
    indexDir: paths.dir,
    cacheDir: paths.cacheDir,
    workDir: paths.workDir,
    auditDir: join(root, `${name}-audit`),
  };
}

/**
 * The query service over a {@link buildTestIndex} index: its model, index, audit and cache
 * directories, one model thread, the model in this thread; `over` replaces any of these.
 */
export async function openTestService(
  index: TestIndex,
  over: Partial<import('../../functions/query/src/open.ts').OpenQueryServiceOptions> = {},
) {
  const { openQueryService } = await import('../../functions/query/src/open.ts');
  return openQueryService({
    modelDir: index.bundle,
    indexUri: index.indexDir,
    audit: index.auditDir,
    cacheDir: index.cacheDir,
    threads: 1,
    ...over,
  });
}
