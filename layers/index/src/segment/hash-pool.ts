/**
 * sha256 of segment files on worker threads, so that loading a segment uses every core: the graph
 * file is hashed on one worker while the vectors are read and hashed on another, and hnswlib loads
 * the (checked) graph on libuv's pool meanwhile. One sha256 stream cannot be split, so this is
 * where the parallelism is; a single thread tops out near 1.8 GB/s of sha256 (SHA-NI) and about
 * 1.4 GB/s of reading into fresh memory, which bounded the old read-then-hash load at ~0.5 GB/s.
 *
 * Each file is read and hashed in one pass, piece by piece, so the bytes are hashed while they are
 * still in the CPU cache. The graph file is read through a small reused buffer (hnswlib reads the
 * file itself afterwards: only its hash is needed); the vectors are read straight into a
 * SharedArrayBuffer that the caller keeps, so they cross no thread boundary by copy.
 *
 * The workers are started on first use, shared by every load in the process, and `unref`ed, so an
 * idle pool never keeps the process alive.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Bytes read (and hashed) per step: small enough to stay in the L2 cache while it is hashed. */
const PIECE = 512 * 1024;

// Plain CommonJS evaluated from a string (as graph.ts's worker): it runs the same whether the layer
// is loaded from TypeScript source or compiled JavaScript.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { createHash } = require('node:crypto');
const PIECE = ${PIECE};
const scratch = Buffer.allocUnsafeSlow(PIECE);
parentPort.on('message', (job) => {
  let fd;
  try {
    fd = openSync(job.path, 'r');
    const hash = createHash('sha256');
    let bytes = 0;
    if (job.into) {
      // Read into the shared buffer; one byte of room past the end reveals a longer file.
      const target = new Uint8Array(job.into);
      for (;;) {
        const room = Math.min(PIECE, target.length - bytes);
        if (room === 0) {
          if (readSync(fd, scratch, 0, 1, bytes) > 0) bytes++;
          break;
        }
        const n = readSync(fd, target, bytes, room, bytes);
        if (n === 0) break;
        hash.update(target.subarray(bytes, bytes + n));
        bytes += n;
      }
    } else {
      for (;;) {
        const n = readSync(fd, scratch, 0, PIECE, bytes);
        if (n === 0) break;
        hash.update(scratch.subarray(0, n));
        bytes += n;
      }
    }
    parentPort.postMessage({ id: job.id, sha256: hash.digest('hex'), bytes });
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: { message: error.message, code: error.code } });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

/** What a hashing job reports. */
export interface FileHash {
  /** Lower-case hex sha256 of the bytes read. */
  readonly sha256: string;
  /** Bytes read: the file's size (for {@link readFileHashed}, at most `size + 1`). */
  readonly bytes: number;
}

interface Job {
  readonly id: number;
  readonly path: string;
  readonly into?: SharedArrayBuffer;
}

interface Pending {
  readonly job: Job;
  readonly resolve: (hash: FileHash) => void;
  readonly reject: (error: Error) => void;
}

interface PoolWorker {
  readonly worker: Worker;
  busy?: Pending;
}

const queue: Pending[] = [];
const workers: PoolWorker[] = [];
let nextId = 0;

/** Workers in the pool: one per core, at least 2 (graph and vectors at once), at most 8. */
function poolSize(): number {
  return Math.min(8, Math.max(2, availableParallelism()));
}

function spawn(): PoolWorker {
  const slot: PoolWorker = { worker: new Worker(WORKER_SOURCE, { eval: true }) };
  slot.worker.unref();
  slot.worker.on(
    'message',
    (msg: { id: number; sha256?: string; bytes?: number; error?: { message: string; code?: string } }) => {
      const done = slot.busy;
      slot.busy = undefined;
      if (done && done.job.id === msg.id) {
        if (msg.error) {
          const error = Object.assign(
            new Error(msg.error.message),
            msg.error.code ? { code: msg.error.code } : {},
          );
          done.reject(error);
        } else done.resolve({ sha256: msg.sha256!, bytes: msg.bytes! });
      }
      dispatch();
    },
  );
  const fail = (error: Error) => {
    // A worker that died takes its job with it; the next job starts a fresh worker.
    const i = workers.indexOf(slot);
    if (i >= 0) workers.splice(i, 1);
    slot.busy?.reject(error);
    slot.busy = undefined;
    dispatch();
  };
  slot.worker.on('error', fail);
  slot.worker.on('exit', (code) => fail(new Error(`segment hashing worker exited with code ${code}`)));
  return slot;
}

function dispatch(): void {
  while (queue.length > 0) {
    let slot = workers.find((w) => !w.busy);
    if (!slot) {
      if (workers.length >= poolSize()) return;
      slot = spawn();
      workers.push(slot);
    }
    const next = queue.shift()!;
    slot.busy = next;
    slot.worker.ref();
    slot.worker.postMessage(next.job);
  }
  // Idle workers must not keep the process alive; busy ones must, until they answer.
  for (const w of workers) if (!w.busy) w.worker.unref();
}

function submit(path: string, into?: SharedArrayBuffer): Promise<FileHash> {
  return new Promise((resolve, reject) => {
    queue.push({ job: { id: nextId++, path, ...(into ? { into } : {}) }, resolve, reject });
    dispatch();
  });
}

/** sha256 and size of a file, read and hashed on a worker thread through a small reused buffer. */
export function hashFile(path: string): Promise<FileHash> {
  return submit(path);
}

/**
 * Reads a file of `size` bytes into shared memory and hashes it in the same pass, on a worker
 * thread. `bytes` in the result is the file's size when it is `size` or less, and `size + 1` when
 * the file is longer (only `size` bytes are kept).
 */
export async function readFileHashed(path: string, size: number): Promise<FileHash & { data: Uint8Array }> {
  const shared = new SharedArrayBuffer(size);
  const result = await submit(path, shared);
  return { ...result, data: new Uint8Array(shared, 0, Math.min(size, result.bytes)) };
}
