/**
 * The query service: what one warm container (or `cohort serve`) holds for its whole life: the
 * query model, the searcher (segments in memory, or shards), the note texts and the audit sink.
 * It turns a validated {@link SearchRequest} into a {@link SearchResponse}: embed the query, search
 * chunks with filters and assertion handling, group by patient, attach evidence, audit.
 */
import type { EncoderLogger } from '@cohort/encoder';
import type { SearchFilter } from '@cohort/index';
import { type AuditSink, newAuditId, queryHash } from './audit.ts';
import { cohortHash, decodeCursor, encodeCursor, groupByPatient, type PatientGroup } from './cohort.ts';
import { IndexChangedError, IndexUnavailableError, QueryError, TooManyRequestsError } from './errors.ts';
import { buildEvidence, EXCLUDED_WHEN_AFFIRMED, type NoteTexts } from './evidence.ts';
import type { QueryEmbedder } from './query-encoder.ts';
import type { HealthResponse, SearchRequest, SearchResponse } from './schemas.ts';
import type { ChunkSearcher, SearcherStatus } from './searcher.ts';

/** Who is asking, from the request context (IAM, JWT) or the local server (token, local user). */
export interface Identity {
  /** IAM principal ARN, JWT `sub` (with issuer), `token` or the local user name. */
  readonly id: string;
  readonly kind: 'iam' | 'jwt' | 'token' | 'local';
}

/** Options of {@link QueryService}. */
export interface QueryServiceOptions {
  readonly embedder: QueryEmbedder;
  readonly searcher: ChunkSearcher;
  /** Where snippets come from (`NoteTextStore`). Default none: every snippet is null. */
  readonly texts?: NoteTexts;
  /**
   * Where audit records go. Required: a search that cannot be audited is refused (503). The service
   * owns it, as it owns the embedder and the searcher: {@link QueryService.close} closes it.
   */
  readonly audit: AuditSink;
  /** Least time between two manifest checks, in ms. Default 5000. */
  readonly refreshIntervalMs?: number;
  /** Searches in flight before new ones get 429. Default 64. */
  readonly maxInFlight?: number;
  /** Logs ids, counts and timings only, never query or note text. */
  readonly logger?: EncoderLogger;
  /** Clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * Chunks fetched per wanted patient in the first top-k round (grown ×4 while too few patients).
 * HNSW cost grows with the candidate list, so the first round is kept small: most queries find k
 * distinct patients among 2k chunks, and the rare one that does not pays a second round.
 */
const CHUNKS_PER_PATIENT = 2;
/** Upper bound of chunks fetched for one top-k search: bounds the latency of a rare, broad query. */
const MAX_TOPK_CHUNKS = 50_000;

const silent: EncoderLogger = { debug() {}, info() {}, warn() {} };

/** See the module comment. */
export class QueryService {
  private statusNow: SearcherStatus | undefined;
  private lastCheck = Number.NEGATIVE_INFINITY;
  private checking: Promise<void> | undefined;
  private inFlight = 0;
  private served = false;
  private readonly running = new Set<Promise<void>>();
  private lastRefreshError: string | undefined;
  private readonly logger: EncoderLogger;
  private readonly now: () => number;

  constructor(readonly options: QueryServiceOptions) {
    this.logger = options.logger ?? silent;
    this.now = options.now ?? Date.now;
  }

  /** Whether this service has answered a search (a warm container). */
  get warm(): boolean {
    return this.served;
  }

  /**
   * Checks the manifest when the last check is older than the refresh interval (the first call
   * always reads the status). A failed check keeps the loaded index (logged, reported by health).
   */
  private async fresh(): Promise<SearcherStatus> {
    const interval = this.options.refreshIntervalMs ?? 5000;
    if (this.statusNow === undefined || this.now() - this.lastCheck >= interval) {
      this.checking ??= (async () => {
        try {
          if (this.statusNow !== undefined) await this.options.searcher.refresh();
          this.statusNow = await this.options.searcher.status();
          this.lastRefreshError = undefined;
        } catch (error) {
          this.lastRefreshError = (error as Error).message;
          this.logger.warn('manifest check failed; serving the loaded index', {
            error: (error as Error).name,
          });
          if (this.statusNow === undefined)
            throw new IndexUnavailableError((error as Error).message, { cause: error });
        } finally {
          this.lastCheck = this.now();
          this.checking = undefined;
        }
      })();
      await this.checking;
    }
    return this.statusNow!;
  }

  /** Refuses when the index is empty or holds another model. */
  private usable(status: SearcherStatus): void {
    if (status.manifestVersion === 0) {
      throw new IndexUnavailableError(
        'the index holds no manifest yet (nothing ingested, or a wrong index location)',
      );
    }
    if (status.modelFingerprint !== null && status.modelFingerprint !== this.options.embedder.fingerprint) {
      throw new IndexUnavailableError(
        `the index was built with model ${status.modelFingerprint}, this service loads ${this.options.embedder.fingerprint}`,
      );
    }
  }

  /** The model as health reports it: its fingerprint, and `fixture: true` for the fixture model. */
  private healthModel(): HealthResponse['model'] {
    const { fingerprint, fixture } = this.options.embedder;
    return fixture ? { fingerprint, fixture: true } : { fingerprint };
  }

  /** The answer of `GET /v1/health`. */
  async health(): Promise<HealthResponse> {
    const base = { container: this.served ? ('warm' as const) : ('cold' as const) };
    let status: SearcherStatus;
    try {
      status = await this.fresh();
      this.usable(status);
    } catch (error) {
      const s = this.statusNow;
      return {
        status: 'unavailable',
        ...base,
        manifestVersion: s?.manifestVersion ?? 0,
        segments: s?.segments ?? 0,
        chunks: s?.chunks ?? 0,
        model: this.healthModel(),
        shards: s?.shards ?? 0,
        reason:
          error instanceof QueryError
            ? ((error as IndexUnavailableError).reason ?? error.message)
            : 'internal error',
      };
    }
    return {
      status: 'ok',
      ...base,
      manifestVersion: status.manifestVersion,
      segments: status.segments,
      chunks: status.chunks,
      model: this.healthModel(),
      shards: status.shards,
      ...(this.lastRefreshError ? { reason: `last manifest check failed: ${this.lastRefreshError}` } : {}),
    };
  }

  /**
   * Runs one search and writes its audit record.
   * @throws TooManyRequestsError, IndexUnavailableError, InvalidCursorError, IndexChangedError
   */
  async search(request: SearchRequest, identity: Identity): Promise<SearchResponse> {
    const limit = this.options.maxInFlight ?? 64;
    if (this.inFlight >= limit) throw new TooManyRequestsError();
    this.inFlight++;
    const running = this.run(request, identity);
    const settled = running.then(
      () => {},
      () => {},
    );
    this.running.add(settled);
    try {
      return await running;
    } finally {
      this.inFlight--;
      this.running.delete(settled);
    }
  }

  private async run(request: SearchRequest, identity: Identity): Promise<SearchResponse> {
    const t0 = performance.now();
    const status = await this.fresh();
    this.usable(status);
    const cursor = request.cursor === undefined ? undefined : decodeCursor(request.cursor, request);
    if (cursor && cursor.v !== status.manifestVersion)
      throw new IndexChangedError(cursor.v, status.manifestVersion);

    let vector: Float32Array;
    try {
      ({ vector } = await this.options.embedder.embed(request.query));
    } catch (error) {
      throw new IndexUnavailableError('the query model failed', { cause: error });
    }
    const t1 = performance.now();

    const filter = toSearchFilter(request);
    let groups: PatientGroup[];
    let page: PatientGroup[];
    let total: number;
    let nextCursor: string | undefined;
    let manifestVersion = status.manifestVersion;
    let chunks = status.chunks;
    if (request.minScore !== undefined) {
      const result = await this.options.searcher.search(vector, {
        k: request.k,
        filter,
        minScore: request.minScore,
      });
      manifestVersion = result.manifestVersion;
      chunks = result.chunks;
      groups = groupByPatient(result.hits);
      const offset = cursor?.o ?? 0;
      page = groups.slice(offset, offset + request.k);
      total = groups.length;
      if (offset + request.k < total) {
        nextCursor = encodeCursor({ h: cohortHash(request), v: manifestVersion, o: offset + request.k });
      }
    } else {
      // Top k patients: fetch chunks until k distinct patients are among them (or none are left).
      // Any patient not among the hits scores below the worst hit, so the top k are exact.
      let kChunks = Math.min(Math.max(request.k * CHUNKS_PER_PATIENT, 100), MAX_TOPK_CHUNKS);
      for (;;) {
        const result = await this.options.searcher.search(vector, {
          k: kChunks,
          filter,
          ef: Math.max(kChunks, 100),
        });
        manifestVersion = result.manifestVersion;
        chunks = result.chunks;
        groups = groupByPatient(result.hits);
        if (
          groups.length >= request.k ||
          result.hits.length < kChunks ||
          kChunks >= Math.min(chunks, MAX_TOPK_CHUNKS)
        )
          break;
        kChunks = Math.min(kChunks * 4, MAX_TOPK_CHUNKS, chunks);
      }
      page = groups.slice(0, request.k);
      total = page.length;
    }
    const t2 = performance.now();

    // The audit record needs only what the search found, so it is written while the evidence is
    // built; the answer still waits for it (fail closed: no answer without an audit trail). Should
    // the evidence fail after the record was written, the record stands for a refused search.
    const id = newAuditId();
    const audited = Promise.resolve()
      .then(() =>
        this.options.audit.write({
          format: 'cohort-audit/1',
          id,
          time: new Date(this.now()).toISOString(),
          who: identity.id,
          auth: identity.kind,
          queryHash: queryHash(request.query),
          filters: request.filters ?? null,
          assertion: request.assertion,
          k: request.k,
          minScore: request.minScore ?? null,
          page: cursor !== undefined,
          exportFormat: request.format,
          patientsReturned: page.length,
          totalPatients: total,
          manifestVersion,
          modelFingerprint: this.options.embedder.fingerprint,
        }),
      )
      .then(
        () => undefined,
        (error: unknown) => {
          this.logger.warn('audit write failed; search refused', {
            auditId: id,
            error: (error as Error).name,
          });
          return new IndexUnavailableError('the audit store cannot be written', { cause: error });
        },
      );

    const offset = cursor?.o ?? 0;
    const evidenceHits = page.map((g) => g.hits.slice(0, request.evidence));
    // `audited` never rejects (it resolves to the error), so a failing evidence build leaves no
    // unhandled rejection behind.
    const [evidence, auditError] = await Promise.all([
      buildEvidence(evidenceHits.flat(), {
        ...(this.options.texts ? { texts: this.options.texts } : {}),
        query: request.query,
        assertion: request.assertion,
        onTextError: (noteId, error) =>
          this.logger.warn('note text unreadable; evidence without snippet', {
            noteId,
            error: (error as Error).name,
          }),
      }),
      audited,
    ]);
    if (auditError) throw auditError;
    let at = 0;
    const cohort = page.map((g, i) => {
      const n = evidenceHits[i]!.length;
      const member = {
        patientId: g.patientId,
        score: g.score,
        rank: offset + i + 1,
        matchingNotes: g.noteScores.length,
        evidence: evidence.slice(at, at + n),
      };
      at += n;
      return member;
    });
    const t3 = performance.now();

    const response: SearchResponse = {
      cohort,
      totalPatients: total,
      ...(nextCursor ? { nextCursor } : {}),
      model: { fingerprint: this.options.embedder.fingerprint },
      index: { manifestVersion, chunks },
      timings: {
        encodeMs: round(t1 - t0),
        searchMs: round(t2 - t1),
        evidenceMs: round(t3 - t2),
        totalMs: round(performance.now() - t0),
      },
    };
    this.served = true;
    this.logger.info('search', {
      auditId: id,
      patients: cohort.length,
      totalPatients: total,
      manifestVersion,
      totalMs: response.timings.totalMs,
    });
    return response;
  }

  /**
   * Lets the searches in flight finish (their clients may have gone: a server closing does not
   * wait for handlers whose socket closed), then releases the model, the searcher and the audit sink.
   */
  async close(): Promise<void> {
    await Promise.all([...this.running]);
    await Promise.all([
      this.options.searcher.close(),
      this.options.embedder.close(),
      this.options.audit.close?.(),
    ]);
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** The index filter of a request: its metadata filters plus, in affirmed mode, the excluded assertion kinds. */
export function toSearchFilter(request: SearchRequest): SearchFilter {
  const f = request.filters;
  return {
    ...(f?.patientIds?.length ? { patientIds: f.patientIds } : {}),
    ...(f?.noteTypes?.length ? { noteTypes: f.noteTypes } : {}),
    ...(f?.dateFrom ? { dateFrom: f.dateFrom } : {}),
    ...(f?.dateTo ? { dateTo: f.dateTo } : {}),
    ...(f?.sections?.include?.length ? { sectionsInclude: f.sections.include } : {}),
    ...(f?.sections?.exclude?.length ? { sectionsExclude: f.sections.exclude } : {}),
    ...(request.assertion === 'affirmed' ? { excludeAssertions: [...EXCLUDED_WHEN_AFFIRMED] } : {}),
  };
}
