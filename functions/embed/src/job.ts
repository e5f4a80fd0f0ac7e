/**
 * The job runner: embeds the objects of one job spec into the index. Three stages run at once,
 * joined by bounded queues, so that the encoder is never waiting on I/O or on the index:
 *
 * 1. read: for each object, check its ledger entry (skip versions already indexed or superseded),
 *    stream it through the notes layer's readers, split notes into chunks and tokenize them;
 *    quarantined records are written to `quarantine/<job>/` as they come;
 * 2. encode: take blocks of chunks and embed them (the encoder batches them by token budget);
 * 3. index: gather encoded notes into parts of about `partChunks` chunks and commit each one
 *    (see `commit.ts`): the HNSW graph is built on a worker thread and the upload and commit are
 *    asynchronous, so encoding of the next part goes on meanwhile.
 *
 * Each part's commit is the checkpoint of the objects it completes; a re-run job skips them. A
 * report goes to `jobs/<id>.report.json` at the end.
 */
import { tmpdir } from 'node:os';
import type { EmbedOptions, TokenIdEncoder } from '@cohort/encoder';
import {
  type ChunkMeta,
  type ChunkSource,
  ManifestStore,
  NoteTextStore,
  type ObjectStore,
} from '@cohort/index';
import { type Chunk, NoteChunker, type NoteRecord } from '@cohort/notes';
import { commitPart, type EncodedNote, type PartObject } from './commit.ts';
import { type ObjectRef, objectIdentity } from './events.ts';
import { entryIsNewer, type LedgerRead, ObjectLedger, sameVersion } from './ledger.ts';
import { listQuarantine, type QuarantineEntry, writeQuarantine } from './quarantine.ts';
import { WeightedQueue } from './queue.ts';
import type { ObjectSource } from './sources.ts';
import { type JobSpec, jobReportKey } from './spec.ts';

/** The logger the job writes to (Powertools Logger fits; so does the CLI's). */
export interface JobLogger {
  info(message: string, ...extra: Record<string, unknown>[]): void;
  warn(message: string, ...extra: Record<string, unknown>[]): void;
  debug(message: string, ...extra: Record<string, unknown>[]): void;
}

/** Counts of a running job, as progress reports and log lines give them (never note text). */
export interface JobProgress {
  readonly jobId: string;
  /** Objects in the spec. */
  readonly objectsTotal: number;
  /** Objects read to the end or skipped. */
  readonly objectsDone: number;
  readonly notes: number;
  /** Chunks encoded. */
  readonly chunks: number;
  /** Chunks committed. */
  readonly committedChunks: number;
  readonly quarantined: number;
  readonly seconds: number;
  readonly chunksPerSecond: number;
  /** Seconds left, estimated from objects done (bytes where sizes are known); undefined at the start. */
  readonly etaSeconds?: number;
}

/** Options of {@link runJob}. */
export interface JobRunnerOptions {
  /** The index store (where segments, manifests, the ledger, texts, quarantine and reports go). */
  readonly store: ObjectStore;
  /** Where source objects are read from. */
  readonly source: ObjectSource;
  /**
   * A loaded encoder (an `Encoder`, or a {@link WorkerEncoder} so that encoding does not hold the
   * main thread); its model fingerprint is the index's.
   */
  readonly encoder: TokenIdEncoder;
  /** Chunker. Default: the encoder's tokenizer, at most the model's `maxLength` tokens per chunk. */
  readonly chunker?: NoteChunker;
  /** Chunks per committed part. Default 50,000. */
  readonly partChunks?: number;
  /** Chunks per call to the encoder. Default 2,048. */
  readonly encodeBlock?: number;
  /** Options of `Encoder.embedIds` (token budget, batch size). Default the encoder's. */
  readonly embed?: EmbedOptions;
  /** HNSW links per node. Default the index layer's (16). */
  readonly M?: number;
  /** HNSW build candidate list. Default the index layer's (200). */
  readonly efConstruction?: number;
  /** Scratch directory for segments. Default `os.tmpdir()`. */
  readonly workDir?: string;
  /** Logger. Default: none. */
  readonly logger?: JobLogger;
  /** Milliseconds between progress log lines. Default 10,000. */
  readonly progressIntervalMs?: number;
  /** Called with the counts after every encoded block and committed part. */
  readonly onProgress?: (progress: JobProgress) => void;
  /** Called just before each part's commit (tests use it to interleave jobs). */
  readonly beforeCommit?: (changeId: string) => Promise<void>;
}

/** Busy time of each stage, in seconds. Their sum exceeds `wall` when the stages overlap. */
export interface StageTimings {
  /** Reading, parsing, chunking, tokenizing. */
  readonly read: number;
  /** Encoder calls. */
  readonly encode: number;
  /** HNSW graph builds (worker thread). */
  readonly build: number;
  /** Texts and segment uploads. */
  readonly upload: number;
  /** Manifest commits. */
  readonly commit: number;
  /** Time the encoder waited for input. */
  readonly encodeWaitingForInput: number;
  /** Wall time of the whole job. */
  readonly wall: number;
}

/** Why objects were skipped. */
export interface SkipCounts {
  /** Already indexed at this version (a re-run, or a repeated event). */
  readonly indexed: number;
  /** A newer version (or a delete) is indexed or being indexed. */
  readonly superseded: number;
  /** The object was deleted before the job read it. */
  readonly gone: number;
  /** The key holds another version and this one could not be read (a newer event will come). */
  readonly changed: number;
}

/** The job report (`jobs/<id>.report.json`). */
export interface JobReport {
  readonly jobId: string;
  readonly provider: string;
  readonly variant: string;
  readonly modelFingerprint: string;
  readonly objects: number;
  /** Objects whose notes this run committed. */
  readonly indexedObjects: number;
  readonly skipped: SkipCounts;
  /** Notes and chunks this run committed. */
  readonly notes: number;
  readonly chunks: number;
  readonly parts: number;
  /** Every record quarantined by this job (this run and any earlier attempt). */
  readonly quarantined: readonly QuarantineEntry[];
  readonly timings: StageTimings;
  /** Chunks committed per second of wall time. */
  readonly chunksPerSecond: number;
  readonly startedAt: string;
  readonly finishedAt: string;
}

type ReadItem =
  | {
      readonly kind: 'note';
      readonly objectId: string;
      readonly note: NoteRecord;
      readonly chunks: ChunkMeta[];
      readonly ids: number[][];
    }
  | { readonly kind: 'end'; readonly objectId: string };

type EncodedItem =
  | { readonly kind: 'note'; readonly note: EncodedNote }
  | { readonly kind: 'end'; readonly objectId: string };

/** The chunk metadata the index stores for a chunk of the notes layer. */
export function chunkMeta(chunk: Chunk, note: NoteRecord, source: ChunkSource): ChunkMeta {
  return {
    noteId: chunk.noteId,
    patientId: chunk.patientId,
    section: chunk.section,
    start: chunk.start,
    end: chunk.end,
    tokens: chunk.tokens,
    assertions: chunk.assertions.map((a) => ({ kind: a.kind, start: a.start, end: a.end })),
    flags: chunk.flags,
    ...(note.noteType === undefined ? {} : { noteType: note.noteType }),
    ...(note.noteDate === undefined ? {} : { noteDate: note.noteDate }),
    source,
  };
}

function chunkSource(ref: ObjectRef): ChunkSource {
  return {
    key: ref.key,
    ...(ref.versionId ? { versionId: ref.versionId } : {}),
    ...(ref.etag ? { etag: ref.etag } : {}),
    ...(ref.sequencer ? { sequencer: ref.sequencer } : {}),
  };
}

/** Runs one job to the end and writes its report. See the module comment. */
export async function runJob(spec: JobSpec, options: JobRunnerOptions): Promise<JobReport> {
  const startedAt = new Date();
  const wall0 = performance.now();
  const { store, encoder, logger } = options;
  const partChunks = options.partChunks ?? 50_000;
  const encodeBlock = options.encodeBlock ?? 2048;
  const manifests = new ManifestStore(store);
  const ledger = new ObjectLedger(store);
  const texts = new NoteTextStore(store, { cacheEntries: 0 });
  const chunker =
    options.chunker ??
    (await NoteChunker.create({ tokenizer: encoder.tokenizer, maxTokens: encoder.info.maxLength }));
  const refs = new Map(spec.objects.map((o) => [objectIdentity(o), o]));
  const timing = { read: 0, encode: 0, build: 0, upload: 0, commit: 0, encodeWait: 0 };
  const skipped = { indexed: 0, superseded: 0, gone: 0, changed: 0 };
  const counts = {
    objectsDone: 0,
    bytesDone: 0,
    notes: 0,
    chunks: 0,
    committedNotes: 0,
    committedChunks: 0,
    quarantined: 0,
    parts: 0,
  };
  const indexedObjects = new Set<string>();
  const bytesTotal = spec.objects.reduce((s, o) => s + (o.size ?? 0), 0);

  const progress = (): JobProgress => {
    const seconds = (performance.now() - wall0) / 1000;
    const fraction =
      bytesTotal > 0
        ? counts.bytesDone / bytesTotal
        : spec.objects.length
          ? counts.objectsDone / spec.objects.length
          : 1;
    return {
      jobId: spec.id,
      objectsTotal: spec.objects.length,
      objectsDone: counts.objectsDone,
      notes: counts.notes,
      chunks: counts.chunks,
      committedChunks: counts.committedChunks,
      quarantined: counts.quarantined,
      seconds,
      chunksPerSecond: seconds > 0 ? counts.chunks / seconds : 0,
      ...(fraction > 0 && fraction < 1 ? { etaSeconds: (seconds * (1 - fraction)) / fraction } : {}),
    };
  };
  const timer = setInterval(() => {
    const p = progress();
    logger?.info('embed progress', {
      jobId: p.jobId,
      objects: `${p.objectsDone}/${p.objectsTotal}`,
      notes: p.notes,
      chunks: p.chunks,
      committedChunks: p.committedChunks,
      quarantined: p.quarantined,
      chunksPerSecond: Math.round(p.chunksPerSecond * 10) / 10,
      ...(p.etaSeconds === undefined ? {} : { etaSeconds: Math.round(p.etaSeconds) }),
    });
  }, options.progressIntervalMs ?? 10_000);
  timer.unref();

  const toEncode = new WeightedQueue<ReadItem>(encodeBlock * 4);
  const toIndex = new WeightedQueue<EncodedItem>(partChunks * 2 + encodeBlock);
  const quarantine = async (record: Parameters<typeof writeQuarantine>[2]) => {
    await writeQuarantine(store, spec.id, record);
    counts.quarantined++;
  };

  // The manifest as the job starts: which ledger entries' changes are committed.
  const startManifest = await manifests.latest();
  const isCommitted = (read: LedgerRead) => startManifest?.commits.includes(read.entry.changeId) ?? false;

  // Stage 1: read, parse, chunk, tokenize.
  const reader = async () => {
    for (const ref of spec.objects) {
      const objectId = objectIdentity(ref);
      let t0 = performance.now();
      const read = await ledger.read(ref);
      const done = () => {
        counts.objectsDone++;
        counts.bytesDone += ref.size ?? 0;
      };
      if (read && sameVersion(read.entry, ref) && isCommitted(read)) {
        skipped.indexed++;
        done();
        continue;
      }
      if (read && entryIsNewer(read.entry, ref)) {
        skipped.superseded++;
        done();
        continue;
      }
      const opened = await options.source.open(ref);
      if (opened.status !== 'ok') {
        skipped[opened.status]++;
        done();
        continue;
      }
      const source = chunkSource(ref);
      for await (const item of opened.items) {
        if (item.kind === 'quarantined') {
          await quarantine({
            ...item.quarantined,
            source: { ...item.quarantined.source, ...(ref.sequencer ? { sequencer: ref.sequencer } : {}) },
          });
          continue;
        }
        const { note } = item;
        const prepared = await chunker.prepare(note);
        if (prepared.chunks.length === 0) {
          await quarantine({
            source: { ...note.source, ...(ref.sequencer ? { sequencer: ref.sequencer } : {}) },
            reason: 'no text to embed',
          });
          continue;
        }
        const chunks = prepared.chunks.map((c) => chunkMeta(c, note, source));
        const tokenized = await encoder.tokenize(prepared.chunks.map((c) => note.text.slice(c.start, c.end)));
        timing.read += performance.now() - t0;
        await toEncode.push(
          { kind: 'note', objectId, note, chunks, ids: tokenized.map((t) => t.ids) },
          chunks.length,
        );
        t0 = performance.now();
      }
      timing.read += performance.now() - t0;
      await toEncode.push({ kind: 'end', objectId }, 0);
      done();
    }
    toEncode.close();
  };

  // Stage 2: encode. One block is sent to the encoder while the previous one's vectors are handed
  // on, so an encoder on a worker thread always has the next block queued.
  let encoderFreeAt = 0;
  const startBlock = (items: ReadItem[]) => {
    const ids = items.flatMap((i) => (i.kind === 'note' ? i.ids : []));
    const sent = performance.now();
    // Chunks are cut to the model's length by the chunker; truncation here only guards a tokenizer
    // that counts differently.
    const result = ids.length
      ? encoder.embedIds(ids, { ...options.embed, onOverflow: 'truncate' }).then((r) => {
          // Busy time: from when the encoder could start this block to when it returned it.
          const done = performance.now();
          timing.encode += done - Math.max(sent, encoderFreeAt);
          encoderFreeAt = done;
          return r;
        })
      : Promise.resolve({ embeddings: [] as Float32Array[], truncated: [] as number[] });
    // Handled when awaited below; this keeps a failure of a block not yet awaited from being reported as unhandled.
    result.catch(() => undefined);
    return { items, result };
  };
  const handOn = async (block: ReturnType<typeof startBlock>) => {
    const { embeddings: vectors, truncated } = await block.result;
    if (truncated.length) {
      logger?.warn('chunks truncated to the model length', { jobId: spec.id, count: truncated.length });
    }
    let v = 0;
    for (const item of block.items) {
      if (item.kind === 'end') {
        await toIndex.push(item, 0);
        continue;
      }
      const n = item.chunks.length;
      const encoded: EncodedNote = {
        objectId: item.objectId,
        noteId: item.note.noteId,
        text: item.note.text,
        chunks: item.chunks,
        vectors: vectors.slice(v, v + n),
      };
      v += n;
      counts.notes++;
      counts.chunks += n;
      await toIndex.push({ kind: 'note', note: encoded }, n);
    }
    options.onProgress?.(progress());
  };
  const encodeStage = async () => {
    let inEncoder: ReturnType<typeof startBlock> | undefined;
    for (;;) {
      const { items, waitedMs } = await toEncode.take(encodeBlock, encodeBlock);
      // Waiting for input counts only while the encoder has nothing queued.
      if (!inEncoder) timing.encodeWait += waitedMs;
      if (items.length === 0) break;
      const next = startBlock(items);
      if (inEncoder) await handOn(inEncoder);
      inEncoder = next;
    }
    if (inEncoder) await handOn(inEncoder);
    toIndex.close();
  };

  // Stage 3: gather parts and commit them, one commit in flight while the next part fills.
  const indexStage = async () => {
    const ctx = {
      jobId: spec.id,
      store,
      manifests,
      ledger,
      texts,
      modelFingerprint: encoder.info.fingerprint,
      dims: encoder.dims,
      ...(options.M === undefined ? {} : { M: options.M }),
      ...(options.efConstruction === undefined ? {} : { efConstruction: options.efConstruction }),
      workDir: options.workDir ?? tmpdir(),
      ...(options.beforeCommit ? { beforeCommit: options.beforeCommit } : {}),
    };
    let inFlight: Promise<void> = Promise.resolve();
    let notes: EncodedNote[] = [];
    let objectsInPart = new Map<string, boolean>();
    let partSize = 0;
    const perObject = new Map<string, { noteIds: string[]; chunks: number }>();
    const flush = async () => {
      if (objectsInPart.size === 0) return;
      const objects: PartObject[] = [...objectsInPart].map(([id, complete]) => ({
        ref: refs.get(id)!,
        complete,
        noteIds: perObject.get(id)?.noteIds ?? [],
        chunks: perObject.get(id)?.chunks ?? 0,
      }));
      for (const [id, complete] of objectsInPart) if (complete) perObject.delete(id);
      const partNotes = notes;
      // Objects still open continue in the next part.
      const open = [...objectsInPart].filter(([, complete]) => !complete).map(([id]) => id);
      notes = [];
      partSize = 0;
      objectsInPart = new Map(open.map((id) => [id, false]));
      await inFlight;
      inFlight = commitPart(ctx, objects, partNotes).then((r) => {
        counts.parts++;
        timing.build += r.buildMs;
        timing.upload += r.uploadMs;
        timing.commit += r.commitMs;
        counts.committedNotes += r.notes;
        counts.committedChunks += r.chunks;
        skipped.superseded += r.superseded.length;
        const gone = new Set(r.superseded.map(objectIdentity));
        for (const o of objects)
          if (o.complete && !gone.has(objectIdentity(o.ref))) indexedObjects.add(objectIdentity(o.ref));
        logger?.debug('part committed', {
          jobId: spec.id,
          changeId: r.changeId,
          applied: r.applied,
          notes: r.notes,
          chunks: r.chunks,
        });
        options.onProgress?.(progress());
      });
      // A failed commit fails the job; surface it at the next await rather than as an unhandled rejection.
      inFlight.catch(() => undefined);
    };
    for (;;) {
      const { items } = await toIndex.take(1, Number.POSITIVE_INFINITY);
      if (items.length === 0) break;
      for (const item of items) {
        if (item.kind === 'end') {
          objectsInPart.set(item.objectId, true);
          if (partSize >= partChunks) await flush();
          continue;
        }
        if (!objectsInPart.has(item.note.objectId)) objectsInPart.set(item.note.objectId, false);
        notes.push(item.note);
        partSize += item.note.chunks.length;
        const seen = perObject.get(item.note.objectId) ?? { noteIds: [], chunks: 0 };
        seen.noteIds.push(item.note.noteId);
        seen.chunks += item.note.chunks.length;
        perObject.set(item.note.objectId, seen);
        // Parts end at object ends; only an object too large for one part is cut between notes.
        if (partSize >= 2 * partChunks) await flush();
      }
    }
    await flush();
    await inFlight;
  };

  try {
    // One failing stage fails the others' queues, so nothing waits forever.
    const guard = (p: Promise<void>) =>
      p.catch((error) => {
        toEncode.fail(error);
        toIndex.fail(error);
        throw error;
      });
    await Promise.all([guard(reader()), guard(encodeStage()), guard(indexStage())]);
  } finally {
    clearInterval(timer);
  }

  const wall = (performance.now() - wall0) / 1000;
  const s = (ms: number) => Math.round(ms) / 1000;
  const report: JobReport = {
    jobId: spec.id,
    provider: encoder.provider,
    variant: encoder.variant,
    modelFingerprint: encoder.info.fingerprint,
    objects: spec.objects.length,
    indexedObjects: indexedObjects.size,
    skipped,
    notes: counts.committedNotes,
    chunks: counts.committedChunks,
    parts: counts.parts,
    quarantined: await listQuarantine(store, spec.id),
    timings: {
      read: s(timing.read),
      encode: s(timing.encode),
      build: s(timing.build),
      upload: s(timing.upload),
      commit: s(timing.commit),
      encodeWaitingForInput: s(timing.encodeWait),
      wall: Math.round(wall * 1000) / 1000,
    },
    chunksPerSecond: wall > 0 ? Math.round((counts.committedChunks / wall) * 10) / 10 : 0,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
  await store.put(jobReportKey(spec.id), `${JSON.stringify(report, null, 2)}\n`, {
    contentType: 'application/json',
  });
  logger?.info('embed job finished', {
    jobId: spec.id,
    objects: report.objects,
    indexedObjects: report.indexedObjects,
    skipped,
    notes: report.notes,
    chunks: report.chunks,
    quarantined: report.quarantined.length,
    chunksPerSecond: report.chunksPerSecond,
    timings: report.timings,
  });
  return report;
}
