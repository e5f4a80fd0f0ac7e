/**
 * Downloads a BERT checkpoint (`config.json`, `vocab.txt`, the weights) from the Hugging Face hub
 * into a local cache, resumably and with every file checked against the hub's own hashes.
 *
 * Cache layout, under {@link defaultCacheDir} or `cacheDir`:
 *
 * ```text
 * hub/<owner>--<name>/<commitSha>/config.json        the files, final names only once verified
 * hub/<owner>--<name>/<commitSha>/<file>.incomplete  a download in progress, resumed on the next pull
 * hub/<owner>--<name>/refs/<revision>               the commit sha the revision last resolved to
 * hub/<owner>--<name>/manifests/<commitSha>.json    sizes and sha256s of a complete download
 * ```
 *
 * Two pulls of the same repo into the same cache at the same time are not coordinated: they would
 * write the same `.incomplete` file. Run them one after the other.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HubDownloadError, IntegrityError } from './errors.ts';

/** The public hub; `HF_ENDPOINT` or `endpoint` replace it (a mirror, or a test server). */
export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** One progress report of {@link pullCheckpoint}, sent for every chunk written. */
export interface HubProgressEvent {
  /** File name inside the repo, e.g. `model.safetensors`. */
  readonly file: string;
  /** Bytes of the file on disk so far, the resumed part included. */
  readonly receivedBytes: number;
  /** The file's size, when known. */
  readonly totalBytes: number | undefined;
  /**
   * Bytes already on disk when this request started: 0 for a fresh download, the partial file's size
   * on a resume, the whole size for a file served from the cache. `receivedBytes` grows from it; it
   * only falls back (to 0) when a server ignores a range request and the file restarts.
   */
  readonly resumedFrom: number;
}

/** Options of {@link pullCheckpoint}. */
export interface PullOptions {
  /** Repository id, `owner/name`, e.g. `emilyalsentzer/Bio_Discharge_Summary_BERT`. */
  readonly repoId: string;
  /** Branch, tag or commit sha. Default `main`. */
  readonly revision?: string;
  /** Hub base URL. Default `process.env.HF_ENDPOINT`, else `https://huggingface.co`. */
  readonly endpoint?: string;
  /**
   * Cache root. Default `process.env.COHORT_CACHE_DIR`, else `$XDG_CACHE_HOME/cohort`, else
   * `~/.cache/cohort` (see {@link defaultCacheDir}).
   */
  readonly cacheDir?: string;
  /**
   * Access token for private or gated repos, sent as `Authorization: Bearer` to the hub's own origin
   * only, never to a redirect target on another origin, and never logged. Default
   * `process.env.HF_TOKEN`; `null` sends none even when `HF_TOKEN` is set.
   */
  readonly token?: string | null;
  /** Called for every chunk written, and once for each file found in the cache. */
  readonly onProgress?: (event: HubProgressEvent) => void;
  /** The fetch to use. Default the global `fetch`. It is called with `redirect: 'manual'`. */
  readonly fetch?: typeof fetch;
  /**
   * Retries after a network error, HTTP 5xx or 429, with exponential backoff. Default 3. For a file
   * download, an attempt that wrote bytes before failing resets the count, so a flaky link still
   * finishes a large file as long as each attempt makes progress.
   */
  readonly retries?: number;
  /** Delay before the first retry, in ms; it doubles on each following one (capped at 30 s). Default 500. */
  readonly retryDelayMs?: number;
  /**
   * Cancels the pull. The signal's reason is thrown as is, not wrapped; a partial file stays on disk
   * and the next pull resumes it.
   */
  readonly signal?: AbortSignal;
}

/** A file of a {@link PulledCheckpoint}. */
export interface PulledFile {
  /** File name, inside {@link PulledCheckpoint.dir}. */
  readonly name: string;
  /** Size in bytes. */
  readonly bytes: number;
  /** Hex sha256 of the content, for recording where an imported model came from. */
  readonly sha256: string;
}

/** The result of {@link pullCheckpoint}: a verified checkpoint directory in Hugging Face layout. */
export interface PulledCheckpoint {
  /** Directory holding the files: `<cacheDir>/hub/<owner>--<name>/<commitSha>`. */
  readonly dir: string;
  /** The commit the revision resolved to. */
  readonly commitSha: string;
  /** The repository id pulled. */
  readonly repoId: string;
  /** The revision asked for. */
  readonly revision: string;
  /** `config.json`, `vocab.txt`, then the weights (`model.safetensors` or `pytorch_model.bin`). */
  readonly files: readonly PulledFile[];
  /**
   * True when the hub could not be reached and a complete earlier download of the same revision was
   * returned from the cache instead; the revision may have moved on since.
   */
  readonly offline: boolean;
}

/**
 * The default cache root: `COHORT_CACHE_DIR`, else `$XDG_CACHE_HOME/cohort`, else `~/.cache/cohort`.
 * Empty variables count as unset.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['COHORT_CACHE_DIR']) return env['COHORT_CACHE_DIR'];
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'cohort');
  return join(homedir(), '.cache', 'cohort');
}

/**
 * Downloads a BERT checkpoint from the Hugging Face hub into the cache and returns its directory.
 *
 * Resolves `revision` to a commit with `GET {endpoint}/api/models/{repoId}/revision/{revision}?blobs=true`,
 * then fetches `config.json`, `vocab.txt` and `model.safetensors` (or, without it, `pytorch_model.bin`)
 * from `{endpoint}/{repoId}/resolve/{commitSha}/{file}`. Files already complete in the cache for that
 * commit are not fetched again; a partial file is resumed with a `Range` request. Each file is checked
 * against the hub's sha256 (LFS files) or git blob sha1 (other files) before it takes its final name.
 *
 * When the hub cannot be reached and an earlier pull of the same revision is complete in the cache,
 * that one is returned with `offline: true`.
 *
 * @throws HubDownloadError on an HTTP error (401/403: a token may be needed; 404: no such repo or
 *   revision), a repo without the required files, or a network failure that outlasts the retries
 *   (`cause` holds the last error)
 * @throws IntegrityError when a downloaded file's size or hash differs from the hub's; the partial
 *   file is deleted
 */
export async function pullCheckpoint(options: PullOptions): Promise<PulledCheckpoint> {
  const repoId = checkRepoId(options.repoId);
  const revision = options.revision ?? 'main';
  if (revision === '' || revision.split('/').includes('..')) {
    throw new HubDownloadError(`invalid revision ${JSON.stringify(revision)}`);
  }
  const endpoint = (options.endpoint || process.env['HF_ENDPOINT'] || DEFAULT_HUB_ENDPOINT).replace(
    /\/+$/,
    '',
  );
  let hubOrigin: string;
  try {
    hubOrigin = new URL(endpoint).origin;
  } catch (cause) {
    throw new HubDownloadError(`hub endpoint ${JSON.stringify(endpoint)} is not a URL (check HF_ENDPOINT)`, {
      cause,
    });
  }
  const ctx: Context = {
    endpoint,
    hubOrigin,
    repoId,
    fetch: options.fetch ?? globalThis.fetch,
    ...chooseToken(options.token),
    retries: Math.max(0, options.retries ?? 3),
    retryDelayMs: Math.max(0, options.retryDelayMs ?? 500),
    signal: options.signal,
    onProgress: options.onProgress,
  };
  const repoDir = join(options.cacheDir ?? defaultCacheDir(), 'hub', repoId.replace('/', '--'));

  let info: RepoInfo;
  try {
    info = await fetchRepoInfo(ctx, revision);
  } catch (error) {
    if (error instanceof HubDownloadError && unreachableErrors.has(error)) {
      const cached = await readCompleteCache(repoDir, repoId, revision);
      if (cached) return cached;
    }
    throw error;
  }

  const specs = chooseFiles(info, repoId, revision);
  const dir = join(repoDir, info.sha);
  await mkdir(dir, { recursive: true });
  const files: PulledFile[] = [];
  for (const spec of specs) {
    files.push(await ensureFile(ctx, dir, info.sha, spec));
  }

  const manifest: Manifest = { repoId, commitSha: info.sha, files };
  await writeAtomic(join(repoDir, 'manifests', `${info.sha}.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeAtomic(join(repoDir, 'refs', refFileName(revision)), `${info.sha}\n`);
  return { dir, commitSha: info.sha, repoId, revision, files, offline: false };
}

// ---------------------------------------------------------------------------------------------------

interface Context {
  readonly endpoint: string;
  readonly hubOrigin: string;
  readonly repoId: string;
  readonly fetch: typeof fetch;
  readonly token: string | undefined;
  /** Where {@link Context.token} came from, for error messages (never the token itself). */
  readonly tokenSource: 'HF_TOKEN' | 'option' | undefined;
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly signal: AbortSignal | undefined;
  readonly onProgress: ((event: HubProgressEvent) => void) | undefined;
}

interface RepoInfo {
  readonly sha: string;
  readonly siblings: readonly Sibling[];
}

interface Sibling {
  readonly rfilename: string;
  readonly size?: number;
  readonly blobId?: string;
  readonly lfs?: { readonly sha256?: string; readonly size?: number };
}

/** What a file must turn out to be: from the hub's file list, before downloading. */
interface FileSpec {
  readonly name: string;
  readonly size: number;
  /** Set for LFS files: the hub stores their sha256. */
  readonly sha256?: string;
  /** Set for plain git files: their git blob sha1. */
  readonly blobSha1?: string;
}

interface Manifest {
  readonly repoId: string;
  readonly commitSha: string;
  readonly files: readonly PulledFile[];
}

const COMMIT_SHA = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const MAX_REDIRECTS = 10;
const MAX_BACKOFF_MS = 30_000;
const REQUIRED_FILES = ['config.json', 'vocab.txt'] as const;
const WEIGHT_FILES = ['model.safetensors', 'pytorch_model.bin'] as const;

/** Errors that mean "the hub is down or unreachable", the only ones the offline cache may answer. */
const unreachableErrors = new WeakSet<Error>();

/** A failure worth another attempt: network error, 5xx, 429, a connection cut mid-file. */
class Retryable extends Error {
  constructor(
    message: string,
    readonly details: { cause?: unknown; retryAfterMs?: number; progressed?: boolean } = {},
  ) {
    super(message, { cause: details.cause });
  }
}

function checkRepoId(repoId: string): string {
  // Hub ids are `owner/name` of letters, digits, `-`, `_`, `.`; checking here also keeps the id from
  // steering the cache path or the URL anywhere else.
  if (!/^[\w.-]+\/[\w.-]+$/.test(repoId) || repoId.split('/').some((part) => part === '.' || part === '..')) {
    throw new HubDownloadError(
      `invalid repository id ${JSON.stringify(repoId)}: expected owner/name, e.g. emilyalsentzer/Bio_Discharge_Summary_BERT`,
    );
  }
  return repoId;
}

function chooseToken(option: string | null | undefined): Pick<Context, 'token' | 'tokenSource'> {
  if (option === null) return { token: undefined, tokenSource: undefined };
  if (option) return { token: option, tokenSource: 'option' };
  const fromEnv = process.env['HF_TOKEN'];
  return fromEnv ? { token: fromEnv, tokenSource: 'HF_TOKEN' } : { token: undefined, tokenSource: undefined };
}

function refFileName(revision: string): string {
  // Branch names may contain `/` (`refs/pr/1`); one flat, reversible file name per revision.
  return encodeURIComponent(revision);
}

async function fetchRepoInfo(ctx: Context, revision: string): Promise<RepoInfo> {
  const url = `${ctx.endpoint}/api/models/${ctx.repoId}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const label = `resolve ${ctx.repoId}@${revision}`;
  const text = await retrying(ctx, label, async () => {
    const res = await request(ctx, url, { accept: 'application/json' });
    if (!res.ok) throw await statusError(ctx, res, { revision });
    try {
      return await res.text();
    } catch (cause) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      throw new Retryable(`the answer to ${url} was cut off: ${describeError(cause)}`, { cause });
    }
  });
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const info = body as Partial<RepoInfo> | null;
  if (!info || typeof info.sha !== 'string' || !COMMIT_SHA.test(info.sha) || !Array.isArray(info.siblings)) {
    throw new HubDownloadError(
      `${url} did not answer with a commit sha and a file list; is ${ctx.endpoint} a Hugging Face hub (HF_ENDPOINT)?`,
    );
  }
  return { sha: info.sha, siblings: info.siblings.filter((s) => s && typeof s.rfilename === 'string') };
}

function chooseFiles(info: RepoInfo, repoId: string, revision: string): FileSpec[] {
  const byName = new Map(info.siblings.map((s) => [s.rfilename, s]));
  const weights = WEIGHT_FILES.find((name) => byName.has(name));
  const missing: string[] = REQUIRED_FILES.filter((name) => !byName.has(name));
  if (!weights) missing.push(WEIGHT_FILES.join(' or '));
  if (missing.length > 0) {
    const names = info.siblings.map((s) => s.rfilename);
    const listed =
      names.length > 40 ? `${names.slice(0, 40).join(', ')}, … (${names.length} in all)` : names.join(', ');
    const sharded = byName.has('model.safetensors.index.json') || byName.has('pytorch_model.bin.index.json');
    throw new HubDownloadError(
      `${repoId}@${revision} is not a BERT checkpoint this importer can pull: missing ${missing.join(', ')}` +
        `${sharded ? ' (sharded weights are not supported)' : ''}; the repo has: ${listed || 'no files'}`,
    );
  }
  return [...REQUIRED_FILES, weights as string].map((name) => fileSpec(byName.get(name)!, repoId));
}

function fileSpec(sibling: Sibling, repoId: string): FileSpec {
  const name = sibling.rfilename;
  const size = sibling.lfs?.size ?? sibling.size;
  const incomplete = (what: string) =>
    new HubDownloadError(
      `the hub's file list for ${repoId} gives no ${what} for ${name}, so it cannot be verified; ` +
        `the endpoint must support ?blobs=true (check HF_ENDPOINT)`,
    );
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw incomplete('size');
  if (sibling.lfs) {
    const sha256 = sibling.lfs.sha256?.toLowerCase();
    if (!sha256 || !SHA256.test(sha256)) throw incomplete('sha256');
    return { name, size, sha256 };
  }
  const blobSha1 = sibling.blobId?.toLowerCase();
  if (!blobSha1 || !COMMIT_SHA.test(blobSha1)) throw incomplete('blob id');
  return { name, size, blobSha1 };
}

/** Returns the file from the cache when it is there, else downloads it. */
async function ensureFile(ctx: Context, dir: string, commitSha: string, spec: FileSpec): Promise<PulledFile> {
  const finalPath = join(dir, spec.name);
  const existing = await statOrUndefined(finalPath);
  if (existing) {
    const cached =
      existing.isFile() && existing.size === spec.size ? await verifyCached(finalPath, spec) : undefined;
    if (cached) {
      report(ctx, spec.name, spec.size, spec.size, spec.size);
      return { name: spec.name, bytes: spec.size, sha256: cached };
    }
    await rm(finalPath, { force: true, recursive: true });
  }

  const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${commitSha}/${encodeURIComponent(spec.name)}`;
  const partialPath = `${finalPath}.incomplete`;
  const sha256 = await retrying(ctx, `download ${spec.name}`, () =>
    downloadAttempt(ctx, url, partialPath, spec),
  );
  await rename(partialPath, finalPath);
  return { name: spec.name, bytes: spec.size, sha256 };
}

/**
 * The cheap check of a cached file, whose size already matched: an LFS file's sha256 is the hub's,
 * verified when it was written, so rehashing hundreds of MB on every pull buys little; the small git
 * files are rehashed, which also yields their sha256.
 */
async function verifyCached(path: string, spec: FileSpec): Promise<string | undefined> {
  if (spec.sha256) return spec.sha256;
  const hashes = new Hashes(spec);
  for await (const chunk of createReadStream(path)) hashes.update(chunk as Buffer);
  const digest = hashes.digest();
  return digest.blobSha1 === spec.blobSha1 ? digest.sha256 : undefined;
}

/** One request for a file; resolves to its sha256 once the partial file holds the whole, verified file. */
async function downloadAttempt(
  ctx: Context,
  url: string,
  partialPath: string,
  spec: FileSpec,
): Promise<string> {
  let offset = (await statOrUndefined(partialPath))?.size ?? 0;
  if (offset > spec.size) {
    await rm(partialPath, { force: true });
    offset = 0;
  }
  const hashes = new Hashes(spec);
  let received = offset;

  // A partial file that is already whole (a crash before the rename) needs no request: a range
  // request starting at its end would only get a 416.
  if (offset < spec.size || offset === 0) {
    const res = await request(ctx, url, offset > 0 ? { range: `bytes=${offset}-` } : {});
    // Once the body is read through a reader, only the reader can cancel it.
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      let append = false;
      if (res.status === 206 && offset > 0) {
        const start = contentRangeStart(res.headers.get('content-range'));
        if (start !== offset) {
          await discard(res);
          await rm(partialPath, { force: true });
          throw new Retryable(
            `asked for ${spec.name} from byte ${offset}, the server sent bytes from ${start ?? '?'}`,
          );
        }
        append = true;
      } else if (res.status === 416) {
        // The partial file does not fit what the server has: start over.
        await discard(res);
        await rm(partialPath, { force: true });
        throw new Retryable(`the server refused to resume ${spec.name} from byte ${offset} (HTTP 416)`);
      } else if (!res.ok) {
        throw await statusError(ctx, res, { file: spec.name });
      }
      // HTTP 200 to a range request: the server ignored the range and sends the whole file.
      if (append) await hashPrefix(partialPath, offset, hashes);
      else offset = 0;
      received = offset;
      report(ctx, spec.name, received, spec.size, offset);

      const file = await open(partialPath, append ? 'a' : 'w');
      try {
        reader = res.body?.getReader();
        while (reader) {
          let chunk: Uint8Array;
          try {
            const next = await reader.read();
            if (next.done) break;
            chunk = next.value;
          } catch (cause) {
            if (ctx.signal?.aborted) throw ctx.signal.reason;
            throw new Retryable(
              `the connection broke after ${received} of ${spec.size} bytes of ${spec.name}`,
              {
                cause,
                progressed: received > offset,
              },
            );
          }
          if (received + chunk.byteLength > spec.size) {
            await reader.cancel().catch(() => {});
            await file.close();
            await rm(partialPath, { force: true });
            throw new IntegrityError(
              `${spec.name}: the server sent more than the ${spec.size} bytes the hub lists; the download was deleted`,
            );
          }
          await writeAll(file, chunk);
          hashes.update(chunk);
          received += chunk.byteLength;
          report(ctx, spec.name, received, spec.size, offset);
        }
      } finally {
        await file.close().catch(() => {});
      }
      if (received < spec.size) {
        throw new Retryable(`the server stopped after ${received} of ${spec.size} bytes of ${spec.name}`, {
          progressed: received > offset,
        });
      }
    } catch (error) {
      // Whatever failed after the request (the partial file, hashing it, a write, the progress
      // callback), an unread body would keep its connection open: cancel it. A no-op once it was read
      // to the end or already cancelled.
      await (reader ? reader.cancel() : discard(res)).catch(() => {});
      throw error;
    }
  } else {
    await hashPrefix(partialPath, offset, hashes);
  }

  const digest = hashes.digest();
  const [kind, expected, found] = spec.sha256
    ? ['sha256', spec.sha256, digest.sha256]
    : ['git blob sha1', spec.blobSha1, digest.blobSha1];
  if (expected !== found) {
    await rm(partialPath, { force: true });
    throw new IntegrityError(
      `${spec.name} does not match the hub's ${kind}: expected ${expected}, found ${found}; the download was deleted, ` +
        `pull again to retry`,
    );
  }
  return digest.sha256;
}

/** sha256 of the content, and the git blob sha1 when the spec needs one, fed as bytes arrive. */
class Hashes {
  private readonly sha256 = createHash('sha256');
  private readonly blob: Hash | undefined;

  constructor(spec: FileSpec) {
    // Git hashes the header `blob <size>\0` before the content; the size is the expected one, and a
    // file of another size fails the check anyway.
    this.blob = spec.blobSha1 ? createHash('sha1').update(`blob ${spec.size}\0`) : undefined;
  }

  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.blob?.update(chunk);
  }

  digest(): { sha256: string; blobSha1: string | undefined } {
    return { sha256: this.sha256.digest('hex'), blobSha1: this.blob?.digest('hex') };
  }
}

async function hashPrefix(path: string, bytes: number, hashes: Hashes): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 }))
    hashes.update(chunk as Buffer);
}

async function writeAll(file: FileHandle, chunk: Uint8Array): Promise<void> {
  let done = 0;
  while (done < chunk.byteLength) {
    const { bytesWritten } = await file.write(chunk, done, chunk.byteLength - done);
    done += bytesWritten;
  }
}

function contentRangeStart(header: string | null): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header?.trim() ?? '');
  return match ? Number(match[1]) : undefined;
}

function report(
  ctx: Context,
  file: string,
  receivedBytes: number,
  totalBytes: number,
  resumedFrom: number,
): void {
  ctx.onProgress?.({ file, receivedBytes, totalBytes, resumedFrom });
}

/**
 * One GET, following redirects by hand: the real hub sends LFS files to a CDN on another host, and
 * the token must not travel there (the CDN URL is pre-signed). fetch's own redirect handling would
 * decide that on its own; here the rule is explicit: the token goes to the hub's origin only.
 */
async function request(ctx: Context, url: string, headers: Record<string, string>): Promise<Response> {
  let current = new URL(url);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const sent: Record<string, string> = { ...headers };
    if (ctx.token && current.origin === ctx.hubOrigin) sent['authorization'] = `Bearer ${ctx.token}`;
    let res: Response;
    try {
      res = await ctx.fetch(current, { headers: sent, redirect: 'manual', signal: ctx.signal });
    } catch (cause) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      throw new Retryable(`GET ${current.origin}${current.pathname} failed: ${describeError(cause)}`, {
        cause,
      });
    }
    if ([301, 302, 303, 307, 308].includes(res.status)) {
      const location = res.headers.get('location');
      await discard(res);
      if (!location) throw new HubDownloadError(`${current} answered HTTP ${res.status} without a Location`);
      current = new URL(location, current);
      continue;
    }
    if (res.status >= 500 || res.status === 429) {
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
      await discard(res);
      throw new Retryable(`${current.origin} answered HTTP ${res.status}`, { retryAfterMs });
    }
    return res;
  }
  throw new HubDownloadError(`${url}: more than ${MAX_REDIRECTS} redirects`);
}

/** The error for a non-retryable HTTP status, in words that say what to do. */
async function statusError(
  ctx: Context,
  res: Response,
  about: { revision?: string; file?: string },
): Promise<HubDownloadError> {
  await discard(res);
  // The real hub explains itself in these headers; a mirror may not.
  const code = res.headers.get('x-error-code') ?? '';
  const serverSays = res.headers.get('x-error-message');
  const detail = serverSays ? ` (the hub says: ${serverSays.slice(0, 200)})` : '';
  const what = about.file ? `${about.file} of ${ctx.repoId}` : `${ctx.repoId}@${about.revision}`;
  if (res.status === 401 || res.status === 403) {
    const gated = code === 'GatedRepo' ? ' It is a gated repo: accept its conditions on the hub first.' : '';
    // Name where the token came from, never the token itself.
    const advice =
      ctx.tokenSource === 'option'
        ? 'a token was sent and refused; use a token with read access to it'
        : ctx.tokenSource === 'HF_TOKEN'
          ? 'the token in HF_TOKEN was sent and refused; set HF_TOKEN to a token with read access'
          : 'no token was sent; set HF_TOKEN to a token with read access';
    return new HubDownloadError(
      `HTTP ${res.status} for ${what} at ${ctx.endpoint}${detail}: the repo may not exist, or be private or ` +
        `gated and need an access token (${advice}).${gated}`,
    );
  }
  if (res.status === 404) {
    const missing =
      code === 'RevisionNotFound'
        ? `revision ${about.revision} of ${ctx.repoId}`
        : code === 'EntryNotFound' || about.file
          ? what
          : `repository ${ctx.repoId} or its revision ${about.revision}`;
    return new HubDownloadError(
      `${missing} not found at ${ctx.endpoint} (HTTP 404)${detail}; check the spelling`,
    );
  }
  return new HubDownloadError(`HTTP ${res.status} for ${what} at ${ctx.endpoint}${detail}`);
}

/** Runs `attempt` until it succeeds, fails for good, or the retries are spent. */
async function retrying<T>(ctx: Context, label: string, attempt: () => Promise<T>): Promise<T> {
  let failures = 0;
  for (let attempts = 1; ; attempts++) {
    try {
      return await attempt();
    } catch (error) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (!(error instanceof Retryable)) throw error;
      failures = error.details.progressed ? 1 : failures + 1;
      if (failures > ctx.retries) throw giveUp(ctx, label, attempts, error);
      const backoff = Math.min(ctx.retryDelayMs * 2 ** (failures - 1), MAX_BACKOFF_MS);
      const jittered = backoff * (0.75 + Math.random() * 0.5);
      await sleep(Math.max(jittered, Math.min(error.details.retryAfterMs ?? 0, MAX_BACKOFF_MS)), ctx.signal);
    }
  }
}

function giveUp(ctx: Context, label: string, attempts: number, last: Retryable): HubDownloadError {
  const resumable = label.startsWith('download ')
    ? ' What was downloaded is kept in the cache; pulling again resumes it.'
    : '';
  const error = new HubDownloadError(
    `could not reach the Hugging Face hub at ${ctx.endpoint} to ${label} ` +
      `(${attempts} attempt${attempts === 1 ? '' : 's'}; last: ${last.message}). Check the network or proxy, ` +
      `set HF_ENDPOINT to use a mirror, or download the checkpoint elsewhere and import the directory with ` +
      `\`cohort model import DIR\`.${resumable}`,
    { cause: last.details.cause ?? last },
  );
  unreachableErrors.add(error);
  return error;
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // Node's fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, ...) is in `cause`.
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const reason = cause?.code ?? cause?.message;
  return reason ? `${error.message} (${String(reason)})` : error.message;
}

function parseRetryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

async function discard(res: Response): Promise<void> {
  // An unread body keeps its connection busy; cancelling frees it for the next request.
  await res.body?.cancel().catch(() => {});
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, text);
  await rename(temporary, path);
}

/** A complete earlier pull of `revision`, for when the hub is unreachable; undefined when there is none. */
async function readCompleteCache(
  repoDir: string,
  repoId: string,
  revision: string,
): Promise<PulledCheckpoint | undefined> {
  try {
    const commitSha = COMMIT_SHA.test(revision)
      ? revision
      : (await readFile(join(repoDir, 'refs', refFileName(revision)), 'utf8')).trim();
    if (!COMMIT_SHA.test(commitSha)) return undefined;
    const manifest = JSON.parse(
      await readFile(join(repoDir, 'manifests', `${commitSha}.json`), 'utf8'),
    ) as Partial<Manifest>;
    if (manifest.commitSha !== commitSha || !Array.isArray(manifest.files)) return undefined;
    const dir = join(repoDir, commitSha);
    const files: PulledFile[] = [];
    for (const file of manifest.files) {
      if (typeof file?.name !== 'string' || file.name.includes('/') || file.name.includes('\\'))
        return undefined;
      const info = await statOrUndefined(join(dir, file.name));
      if (!info?.isFile() || info.size !== file.bytes) return undefined;
      files.push({ name: file.name, bytes: file.bytes, sha256: file.sha256 });
    }
    return { dir, commitSha, repoId, revision, files, offline: true };
  } catch {
    return undefined;
  }
}
