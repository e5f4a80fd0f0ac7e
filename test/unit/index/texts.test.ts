import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { NoteTextStore, noteTextKey, noteTextPrefix, TEXTS_PREFIX } from '../../../layers/index/src/texts.ts';
import { tempDir } from '../../helpers/encoder.ts';

let root: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-texts-'));
});
afterAll(async () => cleanup());

const v1 = { key: 'notes/a.jsonl', versionId: 'v1', etag: '"e1"', sequencer: '0A' };
const v2 = { key: 'notes/a.jsonl', versionId: 'v2', etag: '"e2"', sequencer: '0B' };

describe('noteTextKey', () => {
  it('puts every version of a note under one prefix and tells versions apart', () => {
    const a = noteTextKey('note/1 with spaces', v1);
    const b = noteTextKey('note/1 with spaces', v2);
    expect(a.startsWith(noteTextPrefix('note/1 with spaces'))).toBe(true);
    expect(b.startsWith(noteTextPrefix('note/1 with spaces'))).toBe(true);
    expect(a).not.toBe(b);
    expect(a.startsWith(TEXTS_PREFIX)).toBe(true);
    // The id is hashed: nothing of it shows in the key.
    expect(a).not.toContain('note');
    expect(noteTextKey('n', undefined)).toBe(`${noteTextPrefix('n')}unversioned.txt`);
    expect(noteTextKey('n', { ...v1 })).toBe(noteTextKey('n', v1));
  });
});

describe('NoteTextStore', () => {
  it('returns the text of the version a chunk points to', async () => {
    const texts = new NoteTextStore(new LocalDirectoryStore(`${root}/versions`));
    await texts.put('n1', v1, 'Patient denies chest pain. ✓ naïve');
    await texts.put('n1', v2, 'Second version.');
    expect(await texts.get({ noteId: 'n1', source: v1 })).toBe('Patient denies chest pain. ✓ naïve');
    expect(await texts.get({ noteId: 'n1', source: v2 })).toBe('Second version.');
    expect(await texts.get({ noteId: 'n2', source: v1 })).toBeUndefined();
  });

  it('deletes every version of a note, and a cached text goes with it', async () => {
    const store = new LocalDirectoryStore(`${root}/delete`);
    const texts = new NoteTextStore(store);
    await texts.put('n1', v1, 'one');
    await texts.put('n1', v2, 'two');
    await texts.put('n2', undefined, 'other note');
    expect(await texts.get({ noteId: 'n1', source: v1 })).toBe('one');
    expect(await texts.deleteNote('n1')).toBe(2);
    expect(await texts.get({ noteId: 'n1', source: v1 })).toBeUndefined();
    expect(await texts.get({ noteId: 'n2' })).toBe('other note');
    const left: string[] = [];
    for await (const o of store.list(TEXTS_PREFIX)) left.push(o.key);
    expect(left).toEqual([noteTextKey('n2', undefined)]);
  });

  it('keeps at most cacheEntries texts in memory', async () => {
    const store = new LocalDirectoryStore(`${root}/cache`);
    const texts = new NoteTextStore(store, { cacheEntries: 1 });
    await texts.put('a', undefined, 'A');
    await texts.put('b', undefined, 'B');
    expect(await texts.get({ noteId: 'a' })).toBe('A');
    expect(await texts.get({ noteId: 'b' })).toBe('B');
    // 'a' was evicted by 'b': a change behind the store's back shows on the next read of 'a' only.
    await store.put(noteTextKey('a', undefined), 'A2');
    await store.put(noteTextKey('b', undefined), 'B2');
    expect(await texts.get({ noteId: 'a' })).toBe('A2');
  });
});
