/**
 * A fake Hugging Face hub on `node:http`, for testing `pullCheckpoint` and `cohort model pull` against
 * real sockets instead of a mocked `fetch`: redirects, `Range`, dropped connections and status codes
 * then behave as they do on the wire.
 *
 * It serves one repo, from a checkpoint directory on disk or from named files (see
 * {@link PYTORCH_REPO_FILES} for a repo with `pytorch_model.bin` only, like ClinicalBERT's), the way
 * the real hub does:
 *
 * - `GET /api/models/{repo}/revision/{main|commit}?blobs=true`: the file listing, with git blob sha1s
 *   for plain files and `lfs.sha256` for LFS files;
 * - `GET /{repo}/resolve/{commit}/{file}`: plain files directly, LFS files as a 302 to a second
 *   server (the "CDN") on another port, i.e. another origin, so that tests can check what is and is
 *   not sent across origins.
 *
 * Faults are switched on per test through the mutable {@link FakeHub.behaviour}.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The files the fake repo holds besides `.gitattributes`, in listing order. */
export const FAKE_HUB_FILES = ['config.json', 'vocab.txt', 'model.safetensors'] as const;

/** The file the hub stores in LFS and redirects to the CDN; the others are served by the hub itself. */
export const FAKE_HUB_LFS_FILE = 'model.safetensors';

/** The weight files a repo may hold; the one a fake repo holds is its LFS file. */
const WEIGHT_FILES = ['model.safetensors', 'pytorch_model.bin'];

/**
 * A repo laid out as the real ClinicalBERT repos are, with no safetensors: `config.json`, `vocab.txt`
 * and `pytorch_model.bin` (in LFS). The weights are the committed tiny BERT saved by PyTorch in the
 * legacy container (`test/fixtures/tiny-bert-torch/torch-legacy`), the vocabulary the bert-base-cased
 * one it was made for. Pass it as {@link FakeHubOptions.files}.
 */
export const PYTORCH_REPO_FILES: Readonly<Record<string, string>> = {
  'config.json': fileURLToPath(
    new URL('../fixtures/tiny-bert-torch/torch-legacy/config.json', import.meta.url),
  ),
  'vocab.txt': fileURLToPath(
    new URL('../../layers/encoder/assets/vocab-bert-base-cased.txt', import.meta.url),
  ),
  'pytorch_model.bin': fileURLToPath(
    new URL('../fixtures/tiny-bert-torch/torch-legacy/pytorch_model.bin', import.meta.url),
  ),
};

/** A request as the fake hub (or its CDN) saw it. */
export interface SeenRequest {
  /** Which of the two servers answered. */
  server: 'hub' | 'cdn';
  /** URL path, without the query. */
  path: string;
  /** The `Range` header, if any. */
  range: string | undefined;
  /** The `Authorization` header, if any. */
  authorization: string | undefined;
  /** The status sent, once the response has finished (absent for a connection cut before that). */
  status?: number;
}

/** How the fake hub misbehaves. All off by default; {@link FakeHub.reset} turns them off again. */
export interface FakeHubBehaviour {
  /**
   * Destroy the socket after this many body bytes, on the first request for the LFS file since the
   * last reset only, so that a retry or a later pull can succeed.
   */
  cutAfter?: number;
  /** Answer range requests with the whole file (HTTP 200), as some servers and proxies do. */
  ignoreRange?: boolean;
  /** Flip one byte in the middle of this file's served content (the listing keeps the true hashes). */
  corrupt?: string;
  /** Answer the next N API requests with HTTP 503; counts down as they are answered. */
  failApi?: number;
  /** Answer every hub request (not the CDN's) with 401 unless `Authorization: Bearer <token>` is sent. */
  requireToken?: boolean;
  /** A second repo id the API knows, whose listing lacks the weights. */
  weightlessRepo?: string;
}

/** Options of {@link startFakeHub}. */
export interface FakeHubOptions {
  /** Repository id served, e.g. `emilyalsentzer/Bio_Discharge_Summary_BERT`. */
  readonly repo: string;
  /** 40-hex commit sha that `main` resolves to. */
  readonly commit: string;
  /**
   * A Hugging Face checkpoint directory, as written by `writeRandomBertCheckpoint`: the repo then holds
   * {@link FAKE_HUB_FILES}, with `model.safetensors` in LFS. Give this or {@link FakeHubOptions.files}.
   */
  readonly sourceDir?: string;
  /**
   * The repo's files instead of `sourceDir`: file name → path of the content on disk, in listing
   * order, e.g. {@link PYTORCH_REPO_FILES}. The one weight file among them (`model.safetensors` or
   * `pytorch_model.bin`) is served as the LFS file; a map without one makes a weightless repo.
   */
  readonly files?: Readonly<Record<string, string>>;
  /** The token {@link FakeHubBehaviour.requireToken} accepts. Without one, it accepts none. */
  readonly token?: string;
}

/** A running fake hub; see {@link startFakeHub}. */
export interface FakeHub {
  /** Base URL of the hub, for `endpoint` or `HF_ENDPOINT`. */
  readonly hubUrl: string;
  /** Base URL of the CDN that LFS files redirect to. */
  readonly cdnUrl: string;
  /** Every request so far, in arrival order; {@link FakeHub.reset} empties it in place. */
  readonly seen: SeenRequest[];
  /** Faults to inject; mutate it in a test, {@link FakeHub.reset} clears it. */
  behaviour: FakeHubBehaviour;
  /** The repo's files besides `.gitattributes`, in listing order: {@link FAKE_HUB_FILES} for a `sourceDir`. */
  readonly files: readonly string[];
  /** The file served from LFS through the CDN: {@link FAKE_HUB_LFS_FILE} for a `sourceDir`. */
  readonly lfsFile: string | undefined;
  /** The served bytes of each file in {@link FakeHub.files}, as read from disk. */
  readonly content: ReadonlyMap<string, Buffer>;
  /** The requests that fetched file content (`/resolve/` on the hub, `/lfs/` on the CDN). */
  fileRequests(): SeenRequest[];
  /** Forgets the requests seen and turns every fault off, for the next test. */
  reset(): void;
  /** Stops both servers, cutting open connections. */
  close(): Promise<void>;
}

/** Hex sha256 of `bytes`: what the hub lists as `lfs.sha256`. */
export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Git's blob sha1 of `bytes`: what the hub lists as `blobId` for files outside LFS. */
export function gitBlobSha1(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/**
 * Starts the fake hub and its CDN on free ports of 127.0.0.1, serving the files of `sourceDir` (or
 * `files`) as `repo` at `commit`. Call {@link FakeHub.close} when done.
 */
export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const { repo, commit, token, sourceDir } = options;
  let paths: [string, string][];
  if (options.files) paths = Object.entries(options.files);
  else if (sourceDir !== undefined) paths = FAKE_HUB_FILES.map((name) => [name, join(sourceDir, name)]);
  else throw new Error('startFakeHub needs sourceDir or files');
  const content = new Map<string, Buffer>();
  for (const [name, path] of paths) content.set(name, await readFile(path));
  const files = [...content.keys()];
  const lfsFiles = files.filter((name) => WEIGHT_FILES.includes(name));
  if (lfsFiles.length > 1)
    throw new Error(`a fake repo holds one weight file, not ${lfsFiles.join(' and ')}`);
  const lfsFile = lfsFiles[0];
  const lfsSha = lfsFile === undefined ? undefined : sha256(content.get(lfsFile)!);
  const seen: SeenRequest[] = [];
  let lfsRequests = 0;

  function listing(repoId: string, behaviour: FakeHubBehaviour) {
    const names = files.filter((name) => repoId !== behaviour.weightlessRepo || name !== lfsFile);
    return {
      id: repoId,
      sha: commit,
      siblings: [
        // The real listing has files the client must skip; this one stands for them.
        { rfilename: '.gitattributes', size: 10, blobId: 'a'.repeat(40) },
        ...names.map((name) => {
          const bytes = content.get(name)!;
          return name === lfsFile
            ? {
                rfilename: name,
                size: bytes.length,
                // An LFS file's blobId is the pointer file's, useless for checking the content.
                blobId: 'b'.repeat(40),
                lfs: { sha256: sha256(bytes), size: bytes.length },
              }
            : { rfilename: name, size: bytes.length, blobId: gitBlobSha1(bytes) };
        }),
      ],
    };
  }

  function serveFile(req: IncomingMessage, res: ServerResponse, name: string): void {
    const { behaviour } = hub;
    let bytes = content.get(name)!;
    if (behaviour.corrupt === name) {
      bytes = Buffer.from(bytes);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (range && !behaviour.ignoreRange) {
      start = Number(range[1]);
      if (start >= bytes.length) {
        res.writeHead(416, { 'content-range': `bytes */${bytes.length}` }).end();
        return;
      }
      res.writeHead(206, {
        'content-length': bytes.length - start,
        'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
      });
    } else {
      res.writeHead(200, { 'content-length': bytes.length });
    }
    const body = bytes.subarray(start);
    if (name === lfsFile && ++lfsRequests === 1 && behaviour.cutAfter !== undefined) {
      // Flush part of the body, then drop the connection as a flaky network would.
      res.write(body.subarray(0, behaviour.cutAfter), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  }

  function notFound(res: ServerResponse, code: string): void {
    // The real hub names the reason in this header; the client turns it into its message.
    res.writeHead(404, { 'x-error-code': code }).end('{"error":"Repository not found"}');
  }

  function handler(server: 'hub' | 'cdn') {
    return (req: IncomingMessage, res: ServerResponse) => {
      const { behaviour } = hub;
      const url = new URL(req.url ?? '/', 'http://x');
      const entry: SeenRequest = {
        server,
        path: url.pathname,
        range: req.headers.range,
        authorization: req.headers.authorization,
      };
      seen.push(entry);
      res.on('finish', () => (entry.status = res.statusCode));
      if (
        behaviour.requireToken &&
        server === 'hub' &&
        (token === undefined || req.headers.authorization !== `Bearer ${token}`)
      ) {
        // The real hub answers 401 with RepoNotFound so as not to reveal that a private repo exists.
        res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
        return;
      }
      const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
      if (api && server === 'hub') {
        const [, repoId, revision] = api;
        if (behaviour.failApi && behaviour.failApi-- > 0) {
          res.writeHead(503).end();
          return;
        }
        // Without ?blobs=true the real hub omits the hashes the client needs: refuse, to catch that.
        if (url.searchParams.get('blobs') !== 'true' || ![repo, behaviour.weightlessRepo].includes(repoId)) {
          notFound(res, 'RepoNotFound');
          return;
        }
        if (decodeURIComponent(revision!) !== 'main' && revision !== commit) {
          res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
          return;
        }
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(listing(repoId!, behaviour)));
        return;
      }
      const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([0-9a-f]{40})\/([^/]+)$/.exec(url.pathname);
      if (
        resolve &&
        server === 'hub' &&
        resolve[1] === repo &&
        resolve[2] === commit &&
        content.has(resolve[3]!)
      ) {
        const name = resolve[3]!;
        if (name === lfsFile) {
          // The real hub sends LFS files to a CDN on another host.
          res.writeHead(302, { location: `${hub.cdnUrl}/lfs/${lfsSha}` }).end();
          return;
        }
        serveFile(req, res, name);
        return;
      }
      if (server === 'cdn' && lfsFile !== undefined && url.pathname === `/lfs/${lfsSha}`) {
        serveFile(req, res, lfsFile);
        return;
      }
      res.writeHead(404).end();
    };
  }

  const hubServer = createServer(handler('hub'));
  const cdnServer = createServer(handler('cdn'));
  const hub: FakeHub = {
    hubUrl: await listen(hubServer),
    cdnUrl: await listen(cdnServer),
    seen,
    behaviour: {},
    files,
    lfsFile,
    content,
    fileRequests: () => seen.filter((s) => s.path.includes('/resolve/') || s.path.startsWith('/lfs/')),
    reset() {
      seen.length = 0;
      hub.behaviour = {};
      lfsRequests = 0;
    },
    async close() {
      // A test may leave a keep-alive or half-sent response open; close() alone would wait for it.
      hubServer.closeAllConnections();
      cdnServer.closeAllConnections();
      await Promise.all([closeServer(hubServer), closeServer(cdnServer)]);
    },
  };
  return hub;
}

/**
 * A URL on 127.0.0.1 where nothing listens: a port that was just free, bound and released again.
 * Connecting to it is refused at once, as for a hub that cannot be reached.
 */
export async function unreachableUrl(): Promise<string> {
  const server = createServer();
  const url = await listen(server);
  await closeServer(server);
  return url;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}
