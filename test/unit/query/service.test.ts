import { readdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BatchingEmbedder,
  createRouter,
  MODEL_WORKER_NICENESS,
  modelWorkerThreads,
  openQueryService,
  type QueryService,
  queryHash,
  type Router,
  SearchRequestSchema,
  type SearchResponse,
} from '../../../functions/query/src/index.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { IndexWriter } from '../../../layers/index/src/writer.ts';
import { tempDir, threadNiceness, tinyBundle } from '../../helpers/encoder.ts';
import {
  embedTestQuery,
  standardNotes,
  TEST_QUERY,
  testIndexPaths,
  writeTestIndex,
} from '../../helpers/query.ts';

let root: string;
let cleanup: () => Promise<void>;
let service: QueryService;
let router: Router;
let auditDir: string;
let indexDir: string;
let store: LocalDirectoryStore;
let q: Float32Array;
let fingerprint: string;
let bundle: string;
let cacheDir: string;
const identity = { id: 'arn:aws:iam::123456789012:user/alice', kind: 'iam' as const };

async function search(body: Record<string, unknown>) {
  const r = await router({
    method: 'POST',
    path: '/v1/search',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    identity,
  });
  return { ...r, json: r.headers['content-type']?.includes('json') ? JSON.parse(r.body) : undefined };
}

async function cohort(body: Record<string, unknown>): Promise<SearchResponse> {
  const r = await search(body);
  expect(r.status, r.body).toBe(200);
  return r.json as SearchResponse;
}

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-query-'));
  bundle = await tinyBundle(root, { variants: ['fp32', 'int8'] });
  ({ q, fingerprint } = await embedTestQuery(bundle));
  const paths = testIndexPaths(root, 'index');
  indexDir = paths.dir;
  store = new LocalDirectoryStore(indexDir, { fsync: false });
  await writeTestIndex(store, { q, fingerprint, notes: standardNotes(), workDir: paths.workDir });
  auditDir = join(root, 'audit');
  service = await openQueryService({
    modelDir: bundle,
    indexUri: indexDir,
    audit: auditDir,
    cacheDir: paths.cacheDir,
    refreshIntervalMs: 0,
    threads: 1,
  });
  cacheDir = paths.cacheDir;
  router = createRouter({ service });
});

afterAll(async () => {
  await service?.close();
  await cleanup?.();
});

describe('cohort ranking', () => {
  it('ranks patients by their best affirmed chunk, breaking ties by their other notes', async () => {
    const r = await cohort({ query: TEST_QUERY, k: 6 });
    expect(r.cohort.map((m) => m.patientId)).toEqual(['p1', 'p3', 'p5', 'p6', 'p7', 'p9']);
    expect(r.cohort.map((m) => m.rank)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.cohort[0]!.score).toBeCloseTo(0.95, 5);
    // p5 and p6 tie exactly on their best chunk; p5's second note decides.
    expect(r.cohort[2]!.score).toBe(r.cohort[3]!.score);
    // The tie-break saw p5's second note, so it counts as a matching note.
    expect(r.cohort[2]!.matchingNotes).toBeGreaterThanOrEqual(2);
    for (const m of r.cohort) {
      expect(m.matchingNotes).toBeGreaterThanOrEqual(new Set(m.evidence.map((e) => e.noteId)).size);
    }
    expect(r.totalPatients).toBe(6);
    expect(r.model.fingerprint).toBe(fingerprint);
    expect(r.index).toEqual({ manifestVersion: 1, chunks: 72 });
    expect(r.timings.totalMs).toBeGreaterThan(0);
  });

  it("lists a patient's evidence best first, up to the asked number", async () => {
    const r = await cohort({ query: TEST_QUERY, k: 1, evidence: 2 });
    const [first] = r.cohort;
    expect(first!.evidence.map((e) => e.noteId)).toEqual(['n1', 'n2']);
    expect(first!.evidence[0]).toMatchObject({
      noteType: 'discharge',
      noteDate: '2020-03-01',
      section: 'hospital_course',
      assertion: 'affirmed',
    });
    expect(first!.evidence[0]!.score).toBeCloseTo(0.95, 5);
  });

  it('returns fewer than k patients when fewer exist', async () => {
    const r = await cohort({ query: TEST_QUERY, k: 1000, filters: { noteTypes: ['radiology'] } });
    expect(r.cohort.map((m) => m.patientId)).toEqual(['p3']);
  });
});

describe('assertions', () => {
  it('leaves out negated, hypothetical and family evidence by default, keeps historical', async () => {
    const ids = (await cohort({ query: TEST_QUERY, k: 100 })).cohort.map((m) => m.patientId);
    expect(ids).not.toContain('p2');
    expect(ids).not.toContain('p4');
    expect(ids).not.toContain('p8');
    expect(ids).toContain('p9');
  });

  it('counts every assertion with assertion "any" and labels the evidence', async () => {
    const r = await cohort({ query: TEST_QUERY, k: 5, assertion: 'any' });
    expect(r.cohort.map((m) => m.patientId)).toEqual(['p2', 'p1', 'p4', 'p3', 'p8']);
    const label = (p: string) => r.cohort.find((m) => m.patientId === p)!.evidence[0]!.assertion;
    expect([label('p2'), label('p4'), label('p8'), label('p1')]).toEqual([
      'negated',
      'family',
      'hypothetical',
      'affirmed',
    ]);
  });
});

describe('filters', () => {
  it('keeps notes in a date range, bounds inclusive', async () => {
    const r = await cohort({ query: TEST_QUERY, filters: { dateFrom: '2020-01-01', dateTo: '2020-03-01' } });
    expect(r.cohort.map((m) => m.patientId)).toEqual(['p1']);
    expect(r.cohort[0]!.evidence.map((e) => e.noteId)).toEqual(['n1', 'n1']);
  });

  it('keeps or drops sections', async () => {
    const only = await cohort({ query: TEST_QUERY, filters: { sections: { include: ['impression'] } } });
    expect(only.cohort.map((m) => m.patientId)).toEqual(['p3']);
    const without = await cohort({
      query: TEST_QUERY,
      k: 3,
      filters: { sections: { exclude: ['hospital_course'] } },
    });
    expect(without.cohort.map((m) => m.patientId)).toEqual(['p3', 'p1']);
  });

  it('keeps named patients and note types', async () => {
    const r = await cohort({
      query: TEST_QUERY,
      filters: { patientIds: ['p6', 'p9', 'nobody'], noteTypes: ['discharge'] },
    });
    expect(r.cohort.map((m) => m.patientId)).toEqual(['p6', 'p9']);
  });
});

describe('evidence snippets', () => {
  it("slices the chunk from the stored note text and highlights the sentence sharing the query's words", async () => {
    const r = await cohort({ query: TEST_QUERY, k: 1 });
    const e = r.cohort[0]!.evidence[0]!;
    expect(e.snippet).toBe(
      'Routine post-operative care. New-onset atrial fibrillation after CABG. Started apixaban 5 mg BID.',
    );
    const [[start, end]] = e.highlights as [[number, number]];
    expect(e.snippet!.slice(start, end)).toBe('New-onset atrial fibrillation after CABG.');
  });

  it('returns the evidence with a null snippet when the note text is not stored', async () => {
    const r = await cohort({ query: TEST_QUERY, filters: { patientIds: ['p7'] } });
    expect(r.cohort[0]!.evidence[0]).toMatchObject({
      noteId: 'n9',
      snippet: null,
      highlights: [],
      assertion: 'affirmed',
    });
  });
});

describe('exhaustive mode', () => {
  it('returns every patient at or above minScore, page by page, with a cursor', async () => {
    const pages: SearchResponse[] = [];
    let cursor: string | undefined;
    do {
      const page = await cohort({ query: TEST_QUERY, k: 2, minScore: 0.69, ...(cursor ? { cursor } : {}) });
      pages.push(page);
      cursor = page.nextCursor;
    } while (cursor);
    expect(pages.map((p) => p.cohort.length)).toEqual([2, 2, 1]);
    expect(pages.flatMap((p) => p.cohort.map((m) => m.patientId))).toEqual(['p1', 'p3', 'p5', 'p6', 'p7']);
    expect(pages.flatMap((p) => p.cohort.map((m) => m.rank))).toEqual([1, 2, 3, 4, 5]);
    expect(pages.every((p) => p.totalPatients === 5)).toBe(true);
  });

  it('counts patients far beyond k from a low threshold', async () => {
    const r = await cohort({ query: TEST_QUERY, k: 1, minScore: 0.1, assertion: 'any' });
    // 9 named patients and 30 fillers score 0.1 or more on their best chunk.
    expect(r.totalPatients).toBe(39);
    expect(r.nextCursor).toBeDefined();
  });

  it('refuses a cursor of another search or a forged one', async () => {
    const first = await cohort({ query: TEST_QUERY, k: 1, minScore: 0.69 });
    const other = await search({ query: 'something else', k: 1, minScore: 0.69, cursor: first.nextCursor });
    expect(other.status).toBe(400);
    expect(other.json.error.code).toBe('invalid_cursor');
    const forged = await search({ query: TEST_QUERY, k: 1, minScore: 0.69, cursor: 'bm90LWpzb24' });
    expect(forged.status).toBe(400);
    const noMin = await search({ query: TEST_QUERY, cursor: first.nextCursor });
    expect(noMin.status).toBe(400);
    expect(noMin.json.error.issues[0].path).toBe('cursor');
  });
});

describe('exports', () => {
  it('writes CSV, one row per patient with the top evidence', async () => {
    const r = await search({ query: TEST_QUERY, k: 2, format: 'csv' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/csv; charset=utf-8');
    const lines = r.body.trimEnd().split('\r\n');
    expect(lines[0]).toBe(
      'rank,patientId,score,noteId,noteType,noteDate,section,assertion,evidenceScore,snippet',
    );
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(
      /^1,p1,0\.9\d+,n1,discharge,2020-03-01,hospital_course,affirmed,0\.9\d+,Routine post-operative care\. New-onset/,
    );
    expect(lines[2]).toMatch(/^2,p3,/);
  });

  it('writes a FHIR R4 Group of the patients (actual, the query in the description)', async () => {
    const r = await search({ query: TEST_QUERY, k: 3, format: 'fhir-group' });
    expect(r.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    const group = JSON.parse(r.body);
    expect(group).toMatchObject({ resourceType: 'Group', type: 'person', actual: true, quantity: 3 });
    expect(group.member.map((m: { entity: { reference: string } }) => m.entity.reference)).toEqual([
      'Patient/p1',
      'Patient/p3',
      'Patient/p5',
    ]);
    expect(group.description).toContain(TEST_QUERY);
  });

  it('puts the next cursor in a header for CSV pages', async () => {
    const r = await search({ query: TEST_QUERY, k: 1, minScore: 0.69, format: 'csv' });
    expect(r.headers['x-next-cursor']).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('audit', () => {
  it('writes one record per search: who, when, the query hash (not the text), filters and counts', async () => {
    const before = (await auditLines()).length;
    await cohort({ query: TEST_QUERY, k: 2, filters: { noteTypes: ['discharge'] } });
    const added = (await auditLines()).slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).not.toContain('atrial');
    const record = JSON.parse(added[0]!);
    expect(record).toMatchObject({
      format: 'cohort-audit/1',
      who: identity.id,
      auth: 'iam',
      queryHash: queryHash(TEST_QUERY),
      filters: { noteTypes: ['discharge'] },
      patientsReturned: 2,
      totalPatients: 2,
      manifestVersion: 1,
      modelFingerprint: fingerprint,
    });
    expect(Date.now() - Date.parse(record.time)).toBeLessThan(60_000);
  });
});

describe('index changes', () => {
  it('sees a new manifest (deleted notes gone) and refuses a cursor from the older version', async () => {
    const first = await cohort({ query: TEST_QUERY, k: 1, minScore: 0.69 });
    const writer = new IndexWriter(store, {
      modelFingerprint: fingerprint,
      dims: q.length,
      workDir: join(root, 'w2'),
    });
    await writer.deleteNotes(['n1', 'n2'], 'delete-p1');
    const after = await cohort({ query: TEST_QUERY, k: 1 });
    expect(after.cohort[0]!.patientId).toBe('p3');
    expect(after.index.manifestVersion).toBe(2);
    const stale = await search({ query: TEST_QUERY, k: 1, minScore: 0.69, cursor: first.nextCursor });
    expect(stale.status).toBe(409);
    expect(stale.json.error.code).toBe('index_changed');
  });
});

/** Every audit record line written so far, file by file in name order. */
async function auditLines(): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name.endsWith('.jsonl')) files.push(join(dir, e.name));
    }
  };
  await walk(auditDir);
  const lines: string[] = [];
  for (const f of files.sort()) lines.push(...(await readFile(f, 'utf8')).split('\n').filter(Boolean));
  return lines;
}

describe('model workers', () => {
  /** The test index and bundle, with model workers as given. */
  const withModelWorkers = (extra: Partial<Parameters<typeof openQueryService>[0]>) =>
    openQueryService({
      modelDir: bundle,
      indexUri: indexDir,
      audit: auditDir,
      cacheDir,
      refreshIntervalMs: 0,
      ...extra,
    });

  it('answers from a model worker at once and starts the others after its first answer', async () => {
    const niceBefore = threadNiceness();
    const withWorkers = await withModelWorkers({ modelWorkers: 2, modelBatch: 1 });
    try {
      const embedder = withWorkers.options.embedder as BatchingEmbedder;
      expect(embedder.encoders).toHaveLength(1);
      const request = SearchRequestSchema.parse({ query: TEST_QUERY, k: 6 });
      const inThread = await service.search(request, identity);
      const first = await withWorkers.search(request, identity);
      // One query alone gives the same vector on a worker as in this thread: the same cohort.
      expect(first.cohort.map((m) => [m.patientId, m.score])).toEqual(
        inThread.cohort.map((m) => [m.patientId, m.score]),
      );
      const deadline = Date.now() + 20_000;
      while (embedder.encoders.length < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(embedder.encoders).toHaveLength(2);
      if (process.platform === 'linux' && availableParallelism() >= 2) {
        // The workers share the cores, so their threads run below this one (MODEL_WORKER_NICENESS);
        // this one is untouched.
        const base = niceBefore.get(process.pid)!;
        const lowered = [...threadNiceness()].filter(
          ([tid, nice]) => !niceBefore.has(tid) && nice === Math.min(19, base + MODEL_WORKER_NICENESS),
        );
        expect(lowered.length).toBeGreaterThanOrEqual(2);
        expect(threadNiceness().get(process.pid)).toBe(base);
      }
      // Without a thread count, the two workers share the cores (they run side by side only within them).
      const cores = availableParallelism();
      expect(embedder.encoders.map((e) => e.threads)).toEqual(
        cores >= 2 ? [Math.ceil(cores / 2), Math.floor(cores / 2)] : [1, 1],
      );
      const both = await Promise.all([1, 2, 3].map(() => withWorkers.search(request, identity)));
      for (const r of both) expect(r.cohort).toEqual(first.cohort);
    } finally {
      await withWorkers.close();
    }
  });

  it('with auto, answers from a worker on every core, then adds narrower ones for load', async () => {
    const auto = await withModelWorkers({ modelWorkers: 'auto' });
    try {
      const embedder = auto.options.embedder as BatchingEmbedder;
      const planned = modelWorkerThreads(availableParallelism());
      expect(embedder.encoders.map((e) => e.threads)).toEqual(planned.slice(0, 1));
      const request = SearchRequestSchema.parse({ query: TEST_QUERY, k: 6 });
      expect((await auto.search(request, identity)).cohort.length).toBeGreaterThan(0);
      const deadline = Date.now() + 30_000;
      while (embedder.encoders.length < planned.length && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(embedder.encoders.map((e) => e.threads)).toEqual(planned);
    } finally {
      await auto.close();
    }
  });

  it('refuses a thread count with auto, which chooses one per worker', async () => {
    await expect(withModelWorkers({ modelWorkers: 'auto', threads: 2 })).rejects.toThrow(
      /give a number of workers/,
    );
  });
});

describe('modelWorkerThreads', () => {
  it('plans one worker on every core, then up to four that share the cores', () => {
    expect(modelWorkerThreads(1)).toEqual([1]);
    expect(modelWorkerThreads(2)).toEqual([2, 1, 1]);
    expect(modelWorkerThreads(4)).toEqual([4, 1, 1, 1, 1]);
    expect(modelWorkerThreads(8)).toEqual([8, 2, 2, 2, 2]);
    // Cores that do not divide evenly go to the first narrow workers, so none stay idle under load.
    expect(modelWorkerThreads(6)).toEqual([6, 2, 2, 1, 1]);
    expect(modelWorkerThreads(7)).toEqual([7, 2, 2, 2, 1]);
    expect(() => modelWorkerThreads(0)).toThrow(RangeError);
  });
});
