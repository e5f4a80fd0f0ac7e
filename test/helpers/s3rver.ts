/**
 * Starts s3rver (the S3-protocol server on npm) on 127.0.0.1 and an ephemeral port, with a temporary
 * directory. Remember that s3rver ignores `If-None-Match` and `If-Match` on writes: never use it to
 * test conditional writes (the store tests show it accepting a second create-only put).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}

type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string; configs: unknown[] }[];
}) => S3rverInstance;

/** A running s3rver. */
export interface RunningS3rver {
  /** `http://127.0.0.1:PORT`, for the SDK's `endpoint` (with `forcePathStyle: true`). */
  readonly endpoint: string;
  /** The only credentials s3rver accepts (it checks signatures). */
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

/** Starts s3rver with the given buckets (default `test`). */
export async function startS3rver(buckets: readonly string[] = ['test']): Promise<RunningS3rver> {
  // s3rver is CommonJS and ships no types.
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const directory = await mkdtemp(join(tmpdir(), 's3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  });
  const address = await server.run();
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    async close() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
