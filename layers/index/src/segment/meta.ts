/**
 * `chunks.bin`: the chunk metadata of a segment as a string table plus typed-array columns, so a
 * load is one read and a handful of typed-array views, not one JSON object per chunk.
 *
 * Layout, version 1, all integers little-endian u32, every section 4-byte aligned:
 *
 * ```
 * header (48 bytes)  magic "CHNK"; version u8 = 1 and 3 zero bytes; then u32 count, strings,
 *                    assertions, flagRefs, stringBytes; then 5 reserved zero u32
 * stringOffsets      u32[strings + 1]   byte offsets into the blob
 * blob               UTF-8 bytes, zero-padded to 4
 * columns            u32[count] each, in this order: noteId, patientId, section, start, end, tokens,
 *                    noteType, noteDate, sourceKey, sourceVersionId, sourceEtag, sourceSequencer
 *                    (string columns hold a string id; optional ones hold 0xFFFFFFFF when absent)
 * assertionStart     u32[count + 1]     chunk i owns assertions [assertionStart[i], assertionStart[i+1])
 * assertionKind      u32[assertions]    string id
 * assertionFrom      u32[assertions]
 * assertionTo        u32[assertions]
 * flagStart          u32[count + 1]     chunk i owns flagIds [flagStart[i], flagStart[i+1])
 * flagIds            u32[flagRefs]      string id
 * ```
 *
 * Every string (ids, section, noteType, noteDate, source fields, assertion kinds, flags) is stored
 * once in the table. An absent optional reads back absent; a `source` with no field set reads back
 * absent too. Offsets and token counts must be integers in [0, 2^32 − 1).
 */
import { IntegrityError } from '../errors.ts';
import type { AssertionKind, ChunkMeta, ChunkSource } from './types.ts';

const MAGIC = 0x4b4e4843; // "CHNK" read as a little-endian u32
/** Current version of the `chunks.bin` layout. */
export const CHUNKS_VERSION = 1;
const HEADER_WORDS = 12;
const ABSENT = 0xffffffff;
const COLUMNS = [
  'noteId',
  'patientId',
  'section',
  'start',
  'end',
  'tokens',
  'noteType',
  'noteDate',
  'sourceKey',
  'sourceVersionId',
  'sourceEtag',
  'sourceSequencer',
] as const;
type Column = (typeof COLUMNS)[number];

const pad4 = (n: number): number => (n + 3) & ~3;

function checkU32(value: number, what: string, i: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= ABSENT) {
    throw new RangeError(`chunk ${i}: ${what} must be an integer in [0, 2^32 - 1), got ${value}`);
  }
  return value;
}

/** Encodes chunk metadata into the `chunks.bin` layout. */
export function encodeChunks(chunks: readonly ChunkMeta[]): Uint8Array {
  const ids = new Map<string, number>();
  const strings: string[] = [];
  const intern = (s: string): number => {
    let id = ids.get(s);
    if (id === undefined) {
      id = strings.length;
      ids.set(s, id);
      strings.push(s);
    }
    return id;
  };
  const optional = (s: string | undefined): number => (s === undefined ? ABSENT : intern(s));

  const n = chunks.length;
  const cols = new Map<Column, Uint32Array>(COLUMNS.map((c) => [c, new Uint32Array(n)]));
  const col = (c: Column): Uint32Array => cols.get(c)!;
  const assertionStart = new Uint32Array(n + 1);
  const flagStart = new Uint32Array(n + 1);
  const kinds: number[] = [];
  const froms: number[] = [];
  const tos: number[] = [];
  const flagIds: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = chunks[i]!;
    col('noteId')[i] = intern(c.noteId);
    col('patientId')[i] = intern(c.patientId);
    col('section')[i] = intern(c.section);
    col('start')[i] = checkU32(c.start, 'start', i);
    col('end')[i] = checkU32(c.end, 'end', i);
    col('tokens')[i] = checkU32(c.tokens, 'tokens', i);
    col('noteType')[i] = optional(c.noteType);
    col('noteDate')[i] = optional(c.noteDate);
    col('sourceKey')[i] = optional(c.source?.key);
    col('sourceVersionId')[i] = optional(c.source?.versionId);
    col('sourceEtag')[i] = optional(c.source?.etag);
    col('sourceSequencer')[i] = optional(c.source?.sequencer);
    assertionStart[i] = kinds.length;
    for (const a of c.assertions) {
      kinds.push(intern(a.kind));
      froms.push(checkU32(a.start, 'assertion start', i));
      tos.push(checkU32(a.end, 'assertion end', i));
    }
    flagStart[i] = flagIds.length;
    for (const f of c.flags) flagIds.push(intern(f));
  }
  assertionStart[n] = kinds.length;
  flagStart[n] = flagIds.length;

  const encoder = new TextEncoder();
  const encoded = strings.map((s) => encoder.encode(s));
  const stringBytes = encoded.reduce((sum, b) => sum + b.length, 0);
  const words =
    HEADER_WORDS +
    (strings.length + 1) +
    pad4(stringBytes) / 4 +
    COLUMNS.length * n +
    (n + 1) +
    3 * kinds.length +
    (n + 1) +
    flagIds.length;
  const out = new Uint8Array(words * 4);
  const view = new DataView(out.buffer);
  let pos = 0;
  const u32 = (v: number): void => {
    view.setUint32(pos, v, true);
    pos += 4;
  };
  const u32s = (vs: ArrayLike<number>): void => {
    for (let i = 0; i < vs.length; i++) u32(vs[i]!);
  };
  u32(MAGIC);
  out[4] = CHUNKS_VERSION;
  pos = 8;
  u32s([n, strings.length, kinds.length, flagIds.length, stringBytes, 0, 0, 0, 0, 0]);
  let offset = 0;
  u32(0);
  for (const b of encoded) u32((offset += b.length));
  for (const b of encoded) {
    out.set(b, pos);
    pos += b.length;
  }
  pos = pad4(pos);
  for (const c of COLUMNS) u32s(col(c));
  u32s(assertionStart);
  u32s(kinds);
  u32s(froms);
  u32s(tos);
  u32s(flagStart);
  u32s(flagIds);
  if (pos !== out.length) throw new Error(`chunks.bin encoder wrote ${pos} of ${out.length} bytes`);
  return out;
}

/** Chunk metadata decoded from `chunks.bin`: columns as typed-array views, strings decoded once. */
export class ChunkTable {
  /** Decoded string table; string columns hold indices into it. */
  readonly strings: readonly string[];
  private readonly cols: ReadonlyMap<Column, Uint32Array>;

  private constructor(
    readonly count: number,
    strings: string[],
    cols: Map<Column, Uint32Array>,
    private readonly assertionStart: Uint32Array,
    private readonly assertionKind: Uint32Array,
    private readonly assertionFrom: Uint32Array,
    private readonly assertionTo: Uint32Array,
    private readonly flagStart: Uint32Array,
    private readonly flagIds: Uint32Array,
  ) {
    this.strings = strings;
    this.cols = cols;
  }

  /**
   * Decodes `chunks.bin`. Throws `IntegrityError` (naming `what`) if the bytes are not a well-formed
   * version-1 table.
   */
  static decode(bytes: Uint8Array, what = 'chunks.bin'): ChunkTable {
    const fail = (why: string): never => {
      throw new IntegrityError(`${what}: ${why}`);
    };
    if (bytes.length < HEADER_WORDS * 4 || bytes.length % 4 !== 0) fail(`bad length ${bytes.length}`);
    // Typed-array views need 4-byte alignment; copy only when the buffer is not aligned.
    const buf = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    const all = new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    if (all[0] !== MAGIC) fail('not a chunks.bin file (bad magic)');
    if (buf[4] !== CHUNKS_VERSION)
      fail(`unsupported version ${buf[4]} (this reader knows ${CHUNKS_VERSION})`);
    const [n, nStrings, nAssertions, nFlags, stringBytes] = [all[2]!, all[3]!, all[4]!, all[5]!, all[6]!];
    let word = HEADER_WORDS;
    const take = (len: number): Uint32Array => {
      if (word + len > all.length) fail('truncated');
      const v = all.subarray(word, word + len);
      word += len;
      return v;
    };
    const offsets = take(nStrings + 1);
    const blobStart = word * 4;
    word += pad4(stringBytes) / 4;
    if (word > all.length) fail('truncated string blob');
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const strings: string[] = new Array(nStrings);
    for (let s = 0; s < nStrings; s++) {
      const a = offsets[s]!;
      const b = offsets[s + 1]!;
      if (a > b || b > stringBytes) fail(`bad string offset at ${s}`);
      strings[s] = decoder.decode(buf.subarray(blobStart + a, blobStart + b));
    }
    const cols = new Map<Column, Uint32Array>();
    for (const c of COLUMNS) cols.set(c, take(n));
    const assertionStart = take(n + 1);
    const assertionKind = take(nAssertions);
    const assertionFrom = take(nAssertions);
    const assertionTo = take(nAssertions);
    const flagStart = take(n + 1);
    const flagIds = take(nFlags);
    if (word !== all.length) fail('trailing bytes');
    if (assertionStart[n] !== nAssertions || flagStart[n] !== nFlags) fail('inconsistent offsets');
    for (const c of ['noteId', 'patientId', 'section'] as const) {
      for (const id of cols.get(c)!) if (id >= nStrings) fail(`bad string id in ${c}`);
    }
    for (const ids of [assertionKind, flagIds])
      for (const id of ids) if (id >= nStrings) fail('bad string id');
    return new ChunkTable(
      n,
      strings,
      cols,
      assertionStart,
      assertionKind,
      assertionFrom,
      assertionTo,
      flagStart,
      flagIds,
    );
  }

  /** The string-id (or value) column, for fast filters: e.g. `column('patientId')[i]`. */
  column(name: Column): Uint32Array {
    return this.cols.get(name)!;
  }

  /** The id of a string in the table, or undefined when no chunk uses it (so no chunk can match it). */
  stringId(value: string): number | undefined {
    const i = this.strings.indexOf(value);
    return i < 0 ? undefined : i;
  }

  private str(c: Column, i: number): string {
    return this.strings[this.cols.get(c)![i]!]!;
  }

  private opt(c: Column, i: number): string | undefined {
    const id = this.cols.get(c)![i]!;
    return id === ABSENT ? undefined : this.strings[id];
  }

  noteId(i: number): string {
    return this.str('noteId', i);
  }

  patientId(i: number): string {
    return this.str('patientId', i);
  }

  /** The whole metadata of chunk `i` (0 ≤ i < count) as an object. */
  get(i: number): ChunkMeta {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new RangeError(`chunk index ${i} out of range [0, ${this.count})`);
    }
    const assertions: { kind: AssertionKind; start: number; end: number }[] = [];
    for (let a = this.assertionStart[i]!; a < this.assertionStart[i + 1]!; a++) {
      assertions.push({
        kind: this.strings[this.assertionKind[a]!] as AssertionKind,
        start: this.assertionFrom[a]!,
        end: this.assertionTo[a]!,
      });
    }
    const flags: string[] = [];
    for (let f = this.flagStart[i]!; f < this.flagStart[i + 1]!; f++)
      flags.push(this.strings[this.flagIds[f]!]!);
    const meta: {
      -readonly [K in keyof ChunkMeta]: ChunkMeta[K];
    } = {
      noteId: this.str('noteId', i),
      patientId: this.str('patientId', i),
      section: this.str('section', i),
      start: this.cols.get('start')![i]!,
      end: this.cols.get('end')![i]!,
      tokens: this.cols.get('tokens')![i]!,
      assertions,
      flags,
    };
    const noteType = this.opt('noteType', i);
    if (noteType !== undefined) meta.noteType = noteType;
    const noteDate = this.opt('noteDate', i);
    if (noteDate !== undefined) meta.noteDate = noteDate;
    const source: { -readonly [K in keyof ChunkSource]: ChunkSource[K] } = {};
    const key = this.opt('sourceKey', i);
    if (key !== undefined) source.key = key;
    const versionId = this.opt('sourceVersionId', i);
    if (versionId !== undefined) source.versionId = versionId;
    const etag = this.opt('sourceEtag', i);
    if (etag !== undefined) source.etag = etag;
    const sequencer = this.opt('sourceSequencer', i);
    if (sequencer !== undefined) source.sequencer = sequencer;
    if (Object.keys(source).length > 0) meta.source = source;
    return meta;
  }
}
