import { type ReadOptions, readNotes } from '../../layers/notes/src/readers/index.ts';
import type { ReadItem } from '../../layers/notes/src/types.ts';

/** Yields `data` in pieces of `size` bytes, so that readers meet every boundary case. */
export async function* chunked(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/** Collects every item a reader yields. */
export async function drain(items: AsyncIterable<ReadItem>): Promise<ReadItem[]> {
  const out: ReadItem[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** A collector that reads `data` under `key`, fed in pieces of `size` bytes. */
export function collectorWithPieces(size: number) {
  return (key: string, data: Uint8Array | string, options?: ReadOptions): Promise<ReadItem[]> =>
    drain(
      readNotes(
        { body: chunked(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, size), key },
        options,
      ),
    );
}
