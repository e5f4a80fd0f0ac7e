/**
 * The text of each indexed note, kept beside the index so that search results can show evidence
 * (a snippet by the chunk's offsets) without re-reading and re-parsing the source object, which may
 * be a multi-gigabyte MIMIC CSV. It lives in the same store as the index, so it is encrypted and
 * access-controlled like it (SSE-KMS on S3), and it goes when the note is deleted (see `deleteNote`
 * and garbage collection).
 *
 * Keys: `texts/<sha256(noteId)>/<version tag>.txt`. Hashing the id keeps keys valid whatever the id
 * holds and puts every version of a note under one prefix, so a delete is one listing; the version
 * tag hashes the chunk's source (object key, version id, etag, sequencer), so a re-ingested note's
 * new text never overwrites the one that older segments still point to.
 */
import { ObjectNotFoundError } from './errors.ts';
import { sha256 } from './segment/hash.ts';
import type { ChunkMeta, ChunkSource } from './segment/types.ts';
import type { ObjectStore } from './store/types.ts';

/** Key prefix of note texts in the index store. */
export const TEXTS_PREFIX = 'texts/';

/** What identifies one version of a note's text: the fields of a chunk that say which note and version. */
export type NoteTextRef = Pick<ChunkMeta, 'noteId' | 'source'>;

/** The key prefix under which every version of a note's text is stored. */
export function noteTextPrefix(noteId: string): string {
  return `${TEXTS_PREFIX}${sha256(noteId)}/`;
}

/** The key of one version of a note's text. A note without a source has one version, `unversioned`. */
export function noteTextKey(noteId: string, source?: ChunkSource): string {
  return `${noteTextPrefix(noteId)}${versionTag(source)}.txt`;
}

function versionTag(source: ChunkSource | undefined): string {
  if (!source) return 'unversioned';
  // Fixed field order, so the same source always gives the same tag.
  const canonical = JSON.stringify([
    source.key ?? null,
    source.versionId ?? null,
    source.etag ?? null,
    source.sequencer ?? null,
  ]);
  return sha256(canonical).slice(0, 32);
}

/** Options of {@link NoteTextStore}. */
export interface NoteTextStoreOptions {
  /** Texts kept in memory after a read, least recently used dropped first. Default 256; 0 keeps none. */
  readonly cacheEntries?: number;
}

/** Reads and writes note texts in an index's {@link ObjectStore}. */
export class NoteTextStore {
  private readonly cache = new Map<string, string>();
  private readonly cacheEntries: number;

  /**
   * @param store the index's store
   * @param options see {@link NoteTextStoreOptions}
   */
  constructor(
    private readonly store: ObjectStore,
    options: NoteTextStoreOptions = {},
  ) {
    this.cacheEntries = options.cacheEntries ?? 256;
  }

  /** Stores one version of a note's text (UTF-8). Writing the same version again replaces it with the same text. */
  async put(noteId: string, source: ChunkSource | undefined, text: string): Promise<void> {
    const key = noteTextKey(noteId, source);
    await this.store.put(key, text, { contentType: 'text/plain; charset=utf-8' });
    this.cache.delete(key);
  }

  /** The text of the note version a chunk came from, or `undefined` when it is not stored (or deleted). */
  async get(ref: NoteTextRef): Promise<string | undefined> {
    const key = noteTextKey(ref.noteId, ref.source);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      // Re-insert to mark it most recently used.
      this.cache.delete(key);
      this.cache.set(key, cached);
      return cached;
    }
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(key);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) return undefined;
      throw error;
    }
    const text = new TextDecoder('utf-8').decode(bytes);
    if (this.cacheEntries > 0) {
      this.cache.set(key, text);
      if (this.cache.size > this.cacheEntries) this.cache.delete(this.cache.keys().next().value as string);
    }
    return text;
  }

  /** Deletes every stored version of a note's text; returns how many objects were deleted. */
  async deleteNote(noteId: string): Promise<number> {
    const prefix = noteTextPrefix(noteId);
    let deleted = 0;
    // Collect first: deleting while a listing pages on is not something every store promises to survive.
    const keys: string[] = [];
    for await (const object of this.store.list(prefix)) keys.push(object.key);
    for (const key of keys) {
      await this.store.delete(key);
      deleted++;
    }
    for (const key of [...this.cache.keys()]) if (key.startsWith(prefix)) this.cache.delete(key);
    return deleted;
  }
}
