import { constants as bufferConstants } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import { CheckpointFormatError } from '../errors.ts';
import { DTYPE_BYTES, type RawTensor, type TensorDType } from '../tensor.ts';

// Reader for `torch.save` checkpoints (`pytorch_model.bin`), written here by hand.
//
// A torch checkpoint is a Python pickle whose tensors point at raw storage blobs. No maintained npm
// package reads it safely: general-purpose pickle readers resolve whatever GLOBAL the file names, or
// stop short of torch's persistent ids and strided storages. So this file holds the three small
// pieces that are needed and nothing more:
//   - a ZIP central-directory reader (torch >= 1.6 writes a ZIP with `<archive>/data.pkl` and one
//     entry per storage, `<archive>/data/<key>`);
//   - the legacy container (torch < 1.6, or `_use_new_zipfile_serialization=False`): a run of pickles
//     followed by the storages, each an 8-byte element count and the raw bytes;
//   - a pickle VM with an allowlist of GLOBALs: OrderedDict, torch's tensor-rebuild functions and the
//     storage classes. Any other GLOBAL is refused before anything is called, so a crafted file can
//     never make this reader do more than build dicts, lists and tensor descriptions.

/** The two containers that `torch.save` writes. */
export type TorchCheckpointFormat = 'torch-zip' | 'torch-legacy';

/** Options of the checkpoint readers. */
export interface CheckpointReadOptions {
  /**
   * Which state-dict keys to return; default all. A tensor not kept is neither copied nor checked
   * against its storage, and a storage that only such tensors use is never inflated or checksummed.
   * Called once per key, in state-dict order.
   */
  readonly keep?: (key: string) => boolean;
}

/** A parsed torch checkpoint: its container and its tensors, in state-dict order. */
export interface TorchCheckpoint {
  readonly format: TorchCheckpointFormat;
  /** Tensors by state-dict key; contiguous tensors are views into the file's bytes. */
  readonly tensors: Map<string, RawTensor>;
}

/**
 * Reads every tensor of a PyTorch checkpoint (`pytorch_model.bin`), in either container: the ZIP
 * format of torch >= 1.6 or the legacy format before it. The file is read whole into one buffer;
 * contiguous tensors are views into it, non-contiguous ones (transposed views, strided slices) are
 * copied into row-major order.
 * @throws CheckpointFormatError if the file is not a torch checkpoint, is corrupt or truncated, is
 *   big-endian, or its pickle references anything beyond a plain state dict of tensors
 */
export async function readTorchCheckpoint(
  path: string,
  options: CheckpointReadOptions = {},
): Promise<Map<string, RawTensor>> {
  return parseTorchCheckpoint(await readFile(path), path, options).tensors;
}

/**
 * Parses a torch checkpoint already in memory, detecting the container by its first bytes.
 * @param file the whole file; returned tensors may be views into it
 * @param label names the file in error messages. Default `'torch checkpoint'`.
 * @param options `keep`: which state-dict keys to return (default all)
 * @throws CheckpointFormatError as {@link readTorchCheckpoint}
 */
export function parseTorchCheckpoint(
  file: Uint8Array,
  label = 'torch checkpoint',
  options: CheckpointReadOptions = {},
): TorchCheckpoint {
  if (file.byteLength >= 4 && readU32(file, 0) === SIG_LOCAL_HEADER) {
    return { format: 'torch-zip', tensors: parseZipCheckpoint(file, label, options.keep) };
  }
  if (file.byteLength >= 2 && file[0] === OP.PROTO) {
    return { format: 'torch-legacy', tensors: parseLegacyCheckpoint(file, label, options.keep) };
  }
  if (file.byteLength >= 262 && latin1(file.subarray(257, 262)) === 'ustar') {
    throw new CheckpointFormatError(
      `${label}: a tar-format torch checkpoint (torch < 0.4), which is not supported; re-save it with a current torch`,
    );
  }
  const head = Array.from(file.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new CheckpointFormatError(
    `${label}: not a torch checkpoint (neither a ZIP archive nor a pickle; starts with ${head || 'nothing'})`,
  );
}

// ---------------------------------------------------------------------------------------------
// Limits. A hostile file must fail with CheckpointFormatError, never exhaust memory or the stack.

/** Largest tensor copied into row-major order, in bytes (contiguous tensors are views, never copied). */
const MAX_COPY_BYTES = 4 * 1024 ** 3;
/** Copies of non-contiguous tensors may total at most this many times the bytes of their storages. */
const COPY_BUDGET_RATIO = 2;
/** Deepest pickle value stack; a state-dict pickle sets items in batches of 1000 and stays shallow. */
const MAX_STACK = 1 << 20;
/** Deepest nesting of MARKs; torch's pickles nest a handful deep. */
const MAX_MARK_DEPTH = 1000;
/** Memo indices accepted, 0 to this bound: about a dozen entries per tensor. */
const MAX_MEMO = 1 << 20;
/** Deflate turns one bit into at most 258 bytes: no stream inflates more than 1032 times its size. */
const DEFLATE_MAX_RATIO = 1032;
/** An archive may inflate to this many times its own size, or to {@link MIN_INFLATE_BUDGET}. */
const INFLATE_BUDGET_RATIO = 16;
const MIN_INFLATE_BUDGET = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Storages and tensors as the pickle describes them

/** A storage named by a persistent id; its bytes arrive later (legacy) or from a ZIP entry. */
class StorageRef {
  bytes: Uint8Array | undefined;
  /** Reads the bytes on first use (a ZIP entry, inflated and checksummed only if a kept tensor needs it). */
  load: (() => Uint8Array) | undefined;
  constructor(
    readonly key: string,
    readonly dtype: TensorDType,
    readonly numel: number,
    /**
     * Legacy view_metadata: this storage is `numel` elements of `base`, from element `offset`. Views
     * of views are flattened, so `base.ref` never has a base itself.
     */
    readonly base?: { readonly ref: StorageRef; readonly offset: number },
  ) {}
}

/** The arguments of `_rebuild_tensor_v2`: a strided view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** A GLOBAL that passed the allowlist. */
class PyGlobal {
  constructor(readonly qualifiedName: string) {}
}

type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | Map<PyValue, PyValue>
  | PyGlobal
  | StorageRef
  | TensorRef;

const STORAGE_DTYPES: ReadonlyMap<string, TensorDType> = new Map<string, TensorDType>([
  ['FloatStorage', 'F32'],
  ['DoubleStorage', 'F64'],
  ['HalfStorage', 'F16'],
  ['BFloat16Storage', 'BF16'],
  ['LongStorage', 'I64'],
  ['IntStorage', 'I32'],
  ['ShortStorage', 'I16'],
  ['CharStorage', 'I8'],
  ['ByteStorage', 'U8'],
  ['BoolStorage', 'BOOL'],
  ['UntypedStorage', 'U8'],
]);

/** Storage class name (`torch.FloatStorage`, or `torch.cuda.FloatStorage` from old GPU saves) → dtype. */
const STORAGE_TYPES: ReadonlyMap<string, TensorDType> = new Map(
  [...STORAGE_DTYPES].flatMap(([name, dtype]) => [
    [`torch.${name}`, dtype] as const,
    [`torch.cuda.${name}`, dtype] as const,
  ]),
);

/** Builds the error for a malformed input; callers `throw` it so that TypeScript narrows. */
type Fail = (message: string) => CheckpointFormatError;

/** What a callable gets from the VM besides its arguments. */
interface CallContext {
  readonly fail: Fail;
  /**
   * Accounts for `units` elements that a call copies out of its arguments. An argument can be one
   * memoized value passed to thousands of calls, so copies are what could multiply a small pickle
   * into a huge heap; the VM refuses a pickle whose calls copy more than it could hold itself.
   */
  readonly charge: (units: number, what: string) => void;
}

type Callable = (args: PyValue[], vm: CallContext) => PyValue;

function rebuildTensor(args: PyValue[], { fail, charge }: CallContext): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef))
    throw fail(`tensor rebuilt from ${kindOf(storage)}, a storage expected`);
  const shape = intList(size, 'tensor size', fail);
  const strides = intList(stride, 'tensor stride', fail);
  charge(shape.length + strides.length, 'tensor size and stride');
  if (shape.length !== strides.length)
    throw fail(`tensor size ${dims(shape)} and stride ${dims(strides)} differ in rank`);
  return new TensorRef(storage, toInt(offset, 'storage offset', fail), shape, strides);
}

function passTensor(args: PyValue[], { fail }: CallContext): TensorRef {
  const [data] = args;
  if (!(data instanceof TensorRef)) throw fail(`parameter rebuilt from ${kindOf(data)}, a tensor expected`);
  return data;
}

/** The functions a state-dict pickle calls with REDUCE, all of them free of side effects here. */
const CALLABLES: ReadonlyMap<string, Callable> = new Map<string, Callable>([
  [
    'collections.OrderedDict',
    (args, { fail, charge }) => {
      const dict = new Map<PyValue, PyValue>();
      const [items] = args;
      if (items === undefined) return dict;
      if (!Array.isArray(items)) throw fail(`OrderedDict built from ${kindOf(items)}`);
      charge(items.length, 'OrderedDict items');
      for (const pair of items) {
        if (!Array.isArray(pair) || pair.length !== 2)
          throw fail('OrderedDict built from something other than pairs');
        dict.set(pair[0]!, pair[1]!);
      }
      return dict;
    },
  ],
  ['torch._utils._rebuild_tensor', rebuildTensor],
  ['torch._utils._rebuild_tensor_v2', rebuildTensor],
  ['torch._utils._rebuild_parameter', passTensor],
  ['torch._utils._rebuild_parameter_with_state', passTensor],
  [
    // Tensor subclasses (nn.Parameter saved directly) wrap the rebuild call in this.
    'torch._tensor._rebuild_from_type_v2',
    (args, vm) => {
      const [func, , funcArgs] = args;
      // Never itself: its arguments may be a list that holds itself, which would recurse forever.
      const callable =
        func instanceof PyGlobal && func.qualifiedName !== 'torch._tensor._rebuild_from_type_v2'
          ? CALLABLES.get(func.qualifiedName)
          : undefined;
      if (!callable || !Array.isArray(funcArgs))
        throw vm.fail('_rebuild_from_type_v2 without a known rebuild function');
      return callable(funcArgs, vm);
    },
  ],
  [
    // Protocol 2 has no bytes opcode; Python 3 pickles bytes as _codecs.encode(text, 'latin1').
    '_codecs.encode',
    (args, { fail, charge }) => {
      const [text, encoding] = args;
      if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
        throw fail('_codecs.encode with arguments other than (str, "latin1")');
      }
      charge(text.length, '_codecs.encode');
      return Uint8Array.from(text, (ch) => ch.charCodeAt(0) & 0xff);
    },
  ],
]);

/** GLOBALs that are only ever passed around as values, never called. */
const TYPES: ReadonlySet<string> = new Set([
  ...STORAGE_TYPES.keys(),
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
]);

/** Parses `('storage', storage_type, key, location, numel[, view_metadata])`. */
function storagePid(pid: PyValue, fail: Fail) {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
    throw fail(`persistent id ${describe(pid)} is not a storage reference`);
  }
  // The location ('cpu', 'cuda:0') is ignored: the bytes on disk are the same wherever they lived.
  const [, type, key, , numel, view] = pid;
  const dtype = type instanceof PyGlobal ? STORAGE_TYPES.get(type.qualifiedName) : undefined;
  if (!dtype) throw fail(`storage of type ${describe(type)} is not supported`);
  if (typeof key !== 'string') throw fail(`storage key ${describe(key)} is not a string`);
  let viewOf: { key: string; offset: number; size: number } | undefined;
  if (view !== undefined && view !== null) {
    if (!Array.isArray(view) || typeof view[0] !== 'string')
      throw fail(`malformed storage view ${describe(view)}`);
    viewOf = {
      key: view[0],
      offset: toInt(view[1], 'view offset', fail),
      size: toInt(view[2], 'view size', fail),
    };
  }
  return { dtype, key, numel: toInt(numel, 'storage size', fail), view: viewOf };
}

/**
 * Resolves a persistent id against a table of storages, so that tensors sharing a storage share one
 * {@link StorageRef}. A legacy view becomes a second ref whose bytes are a window of the first.
 */
function storageResolver(
  storages: Map<string, StorageRef>,
  onNew: (ref: StorageRef) => void,
): (pid: PyValue, fail: Fail) => StorageRef {
  return (pid, fail) => {
    const { dtype, key, numel, view } = storagePid(pid, fail);
    let root = storages.get(key);
    if (!root) {
      root = new StorageRef(key, dtype, numel);
      storages.set(key, root);
      onNew(root);
    } else if (root.dtype !== dtype) {
      throw fail(`storage ${key} is referenced as both ${root.dtype} and ${dtype}`);
    }
    if (!view) return root;
    const existing = storages.get(view.key);
    if (existing) return existing;
    if (view.offset + view.size > root.numel) throw fail(`storage view ${view.key} overruns storage ${key}`);
    const base = root.base
      ? { ref: root.base.ref, offset: root.base.offset + view.offset }
      : { ref: root, offset: view.offset };
    const ref = new StorageRef(view.key, dtype, view.size, base);
    storages.set(view.key, ref);
    return ref;
  };
}

// ---------------------------------------------------------------------------------------------
// Pickle VM

const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  BINFLOAT: 0x47,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  BINUNICODE: 0x58,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  BUILD: 0x62,
  GLOBAL: 0x63,
  DICT: 0x64,
  APPENDS: 0x65,
  GET: 0x67,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  SETITEMS: 0x75,
  EMPTY_DICT: 0x7d,
  EMPTY_TUPLE: 0x29,
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

const OP_NAMES = new Map<number, string>(Object.entries(OP).map(([name, code]) => [code, name]));

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Longest LONG1/LONG4 accepted: torch never pickles an integer near this, and it bounds the work. */
const MAX_LONG_BYTES = 64;

interface PickleResult {
  readonly value: PyValue;
  /** Offset just past the STOP opcode. */
  readonly end: number;
}

/**
 * Runs one pickle starting at `start`. Persistent ids go to `persistentLoad`; GLOBALs outside the
 * allowlist are refused by name.
 */
function unpickle(
  data: Uint8Array,
  start: number,
  label: string,
  persistentLoad: (pid: PyValue, fail: Fail) => PyValue,
): PickleResult {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = start;
  let opStart = start;

  const fail: Fail = (message) =>
    new CheckpointFormatError(`${label}: pickle opcode at byte ${opStart}: ${message}`);
  // What calls may copy in all: twice what the rest of the data could spell out, plus slack.
  const copyBudget = 2 * (data.byteLength - start) + 65_536;
  let copied = 0;
  const vm: CallContext = {
    fail,
    charge: (units, what) => {
      copied += units;
      if (copied > copyBudget) {
        throw fail(
          `${what}: the pickle's calls copy more than ${copyBudget} elements, about twice its size ` +
            '(one large value passed to call after call?)',
        );
      }
    },
  };
  const push = (v: PyValue): void => {
    if (stack.length >= MAX_STACK) throw fail(`stack grows past ${MAX_STACK} entries`);
    stack.push(v);
  };
  const need = (n: number): number => {
    if (pos + n > data.byteLength)
      throw fail(`needs ${n} more bytes but the file ends at ${data.byteLength} (truncated?)`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => data[need(1)]!;
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`length ${v} is too large`);
    return Number(v);
  };
  const bytes = (n: number) => {
    const at = need(n);
    return data.subarray(at, at + n);
  };
  const text = (n: number): string => {
    try {
      return utf8.decode(bytes(n));
    } catch (cause) {
      if (cause instanceof CheckpointFormatError) throw cause;
      throw fail('string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw fail('unterminated text argument (truncated?)');
    const s = latin1(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) {
      throw fail('stack underflow');
    }
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw fail('stack underflow');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const mark = marks.pop();
    if (mark === undefined) throw fail('no MARK on the stack');
    return stack.splice(mark);
  };
  const memoIndex = (index: number | string): number => {
    const n = typeof index === 'number' ? index : /^\d{1,8}$/.test(index) ? Number(index) : -1;
    if (n < 0 || n >= MAX_MEMO)
      throw fail(`memo index ${describe(index)} is out of range (0 to ${MAX_MEMO - 1})`);
    return n;
  };
  const memoPut = (index: number | string): void => {
    memo.set(memoIndex(index), top());
  };
  const memoGet = (index: number | string): PyValue => {
    const n = memoIndex(index);
    if (!memo.has(n)) throw fail(`memo entry ${n} was never stored`);
    return memo.get(n)!;
  };
  const global = (module: string, name: string): PyGlobal => {
    const qualified = `${module}.${name}`;
    if (!CALLABLES.has(qualified) && !TYPES.has(qualified)) {
      const shown = qualified.length > 200 ? `${qualified.slice(0, 200)}…` : qualified;
      throw fail(
        `GLOBAL ${shown} is not on the allowlist of a state-dict reader; refusing to load the file ` +
          '(a pickle can run arbitrary code through GLOBALs, so only tensors, storages and OrderedDict are accepted)',
      );
    }
    return new PyGlobal(qualified);
  };
  const call = (target: PyValue, args: PyValue): PyValue => {
    const callable = target instanceof PyGlobal ? CALLABLES.get(target.qualifiedName) : undefined;
    if (!callable) throw fail(`${describe(target)} is not callable here`);
    if (!Array.isArray(args))
      throw fail(`arguments of ${describe(target)} are ${kindOf(args)}, a tuple expected`);
    return callable(args, vm);
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof Map)) throw fail(`SETITEM on ${kindOf(dict)}, a dict expected`);
    if (items.length % 2 !== 0) throw fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
  };
  const appendItems = (list: PyValue, items: PyValue[]) => {
    if (!Array.isArray(list)) throw fail(`APPEND on ${kindOf(list)}, a list expected`);
    for (const item of items) list.push(item);
  };
  const long = (n: number): number | bigint => {
    if (n > MAX_LONG_BYTES) throw fail(`integer of ${n} bytes`);
    const b = bytes(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (n > 0 && b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (;;) {
    opStart = pos;
    const op = u8();
    switch (op) {
      case OP.PROTO: {
        const protocol = u8();
        if (protocol > 5) throw fail(`pickle protocol ${protocol} is newer than 5`);
        break;
      }
      case OP.FRAME:
        u64(); // frames only help streaming readers; the whole pickle is in memory
        break;
      case OP.STOP: {
        const value = pop();
        return { value, end: pos };
      }
      case OP.MARK:
        if (marks.length >= MAX_MARK_DEPTH) throw fail(`MARKs nested deeper than ${MAX_MARK_DEPTH}`);
        marks.push(stack.length);
        break;
      case OP.POP:
        pop();
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        push(top());
        break;

      case OP.NONE:
        push(null);
        break;
      case OP.NEWTRUE:
        push(true);
        break;
      case OP.NEWFALSE:
        push(false);
        break;
      case OP.BININT:
        push(view.getInt32(need(4), true));
        break;
      case OP.BININT1:
        push(u8());
        break;
      case OP.BININT2:
        push(u16());
        break;
      case OP.LONG1:
        push(long(u8()));
        break;
      case OP.LONG4:
        push(long(u32()));
        break;
      case OP.INT: {
        // Protocol 0/1 text integer; "01"/"00" are how those protocols spell True/False.
        const s = line().trim();
        if (s === '01' || s === '00') push(s === '01');
        else if (/^[-+]?\d+$/.test(s) && Number.isSafeInteger(Number(s))) push(Number(s));
        else throw fail(`malformed INT ${describe(s)}`);
        break;
      }
      case OP.BINFLOAT:
        push(view.getFloat64(need(8), false));
        break;

      case OP.BINUNICODE:
        push(text(u32()));
        break;
      case OP.SHORT_BINUNICODE:
        push(text(u8()));
        break;
      case OP.BINUNICODE8:
        push(text(u64()));
        break;
      case OP.BINSTRING:
        push(text(u32()));
        break;
      case OP.SHORT_BINSTRING:
        push(text(u8()));
        break;
      case OP.BINBYTES:
        push(bytes(u32()));
        break;
      case OP.SHORT_BINBYTES:
        push(bytes(u8()));
        break;
      case OP.BINBYTES8:
      case OP.BYTEARRAY8:
        push(bytes(u64()));
        break;

      case OP.EMPTY_TUPLE:
        push([]);
        break;
      case OP.TUPLE1:
        push([pop()]);
        break;
      case OP.TUPLE2: {
        const b = pop();
        push([pop(), b]);
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        push([pop(), b, c]);
        break;
      }
      case OP.TUPLE:
      case OP.LIST:
        push(popMark());
        break;
      case OP.EMPTY_LIST:
        push([]);
        break;
      case OP.APPEND: {
        const item = pop();
        appendItems(top(), [item]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case OP.EMPTY_DICT:
        push(new Map());
        break;
      case OP.DICT: {
        const dict = new Map<PyValue, PyValue>();
        setItems(dict, popMark());
        push(dict);
        break;
      }
      case OP.SETITEM: {
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        setItems(top(), items);
        break;
      }

      case OP.BINPUT:
        memoPut(u8());
        break;
      case OP.LONG_BINPUT:
        memoPut(u32());
        break;
      case OP.PUT:
        memoPut(line());
        break;
      case OP.MEMOIZE:
        memoPut(memo.size);
        break;
      case OP.BINGET:
        push(memoGet(u8()));
        break;
      case OP.LONG_BINGET:
        push(memoGet(u32()));
        break;
      case OP.GET:
        push(memoGet(line()));
        break;

      case OP.GLOBAL: {
        const module = line();
        push(global(module, line()));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          throw fail('STACK_GLOBAL without module and name strings');
        push(global(module, name));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case OP.NEWOBJ:
      case OP.NEWOBJ_EX: {
        if (op === OP.NEWOBJ_EX) pop(); // keyword arguments; OrderedDict.__new__ ignores them
        pop(); // positional arguments, likewise
        const cls = pop();
        if (!(cls instanceof PyGlobal) || cls.qualifiedName !== 'collections.OrderedDict') {
          throw fail(`${describe(cls)}.__new__ is not supported`);
        }
        push(new Map());
        break;
      }
      case OP.BUILD: {
        const state = pop();
        const target = top();
        // An OrderedDict state dict carries `_metadata` (module versions) as instance state, and
        // tensor subclasses carry theirs the same way; none of it affects the weights.
        if (!(target instanceof Map) && !(target instanceof TensorRef)) {
          throw fail(`BUILD on ${kindOf(target)} with state ${kindOf(state)}`);
        }
        break;
      }
      case OP.BINPERSID:
        push(persistentLoad(pop(), fail));
        break;

      default: {
        const name = OP_NAMES.get(op);
        throw fail(
          `opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''} is not supported`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Legacy container

/** `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** `torch.serialization.PROTOCOL_VERSION`; the only version torch has written since 0.4. */
const LEGACY_PROTOCOL = 1001;

function parseLegacyCheckpoint(
  file: Uint8Array,
  label: string,
  keep: ((key: string) => boolean) | undefined,
): Map<string, RawTensor> {
  let pos = 0;
  const noPersistentIds = (_pid: PyValue, fail: Fail): never => {
    throw fail('persistent id outside the state-dict pickle');
  };
  const load = (persistentLoad: (pid: PyValue, fail: Fail) => PyValue = noPersistentIds): PyValue => {
    const result = unpickle(file, pos, label, persistentLoad);
    pos = result.end;
    return result.value;
  };

  const magic = load();
  if (magic !== LEGACY_MAGIC) {
    throw new CheckpointFormatError(`${label}: a pickle, but not a torch checkpoint (no torch magic number)`);
  }
  const version = load();
  if (version !== LEGACY_PROTOCOL) {
    throw new CheckpointFormatError(
      `${label}: legacy serialization protocol ${describe(version)} is not supported`,
    );
  }
  const sysInfo = load();
  if (sysInfo instanceof Map && sysInfo.get('little_endian') === false) {
    throw new CheckpointFormatError(`${label}: saved on a big-endian machine, which is not supported`);
  }

  const storages = new Map<string, StorageRef>();
  const roots: StorageRef[] = [];
  const root = load(storageResolver(storages, (ref) => roots.push(ref)));
  const keys = load();
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new CheckpointFormatError(
      `${label}: the storage key list is ${kindOf(keys)}, a list of strings expected`,
    );
  }

  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (const key of keys) {
    const ref = storages.get(key);
    if (!ref || ref.base) {
      throw new CheckpointFormatError(`${label}: storage ${key} is listed but no tensor references it`);
    }
    if (pos + 8 > file.byteLength) {
      throw new CheckpointFormatError(`${label}: file ends before storage ${key} (truncated?)`);
    }
    const count = Number(view.getBigUint64(pos, true));
    const length = count * DTYPE_BYTES[ref.dtype];
    pos += 8;
    if (count < ref.numel || pos + length > file.byteLength) {
      throw new CheckpointFormatError(
        `${label}: storage ${key} holds ${count} of ${ref.numel} elements, ${file.byteLength - pos} bytes left in the file (truncated?)`,
      );
    }
    ref.bytes = file.subarray(pos, pos + length);
    pos += length;
  }
  for (const ref of roots) {
    if (!ref.bytes) throw new CheckpointFormatError(`${label}: storage ${ref.key} has no data in the file`);
  }
  return materializeStateDict(root, label, storages, keep);
}

// ---------------------------------------------------------------------------------------------
// ZIP container

const SIG_LOCAL_HEADER = 0x04034b50;
const SIG_CENTRAL_HEADER = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const ZIP64_EXTRA_ID = 0x0001;

interface ZipEntry {
  readonly name: string;
  readonly flags: number;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localOffset: number;
}

function parseZipCheckpoint(
  file: Uint8Array,
  label: string,
  keep: ((key: string) => boolean) | undefined,
): Map<string, RawTensor> {
  const entries = readZipDirectory(file, label);
  const budget = Math.max(MIN_INFLATE_BUDGET, INFLATE_BUDGET_RATIO * file.byteLength);
  const inflate: InflateBudget = { total: budget, left: budget };
  const pickles = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) {
    const sample = [...entries.keys()].slice(0, 5).join(', ');
    throw new CheckpointFormatError(
      `${label}: a ZIP archive with ${pickles.length} <archive>/data.pkl entries, one expected (entries: ${sample || 'none'})`,
    );
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder) {
    const order = latin1(zipEntryData(file, byteorder, label, inflate)).trim();
    if (order !== 'little') {
      throw new CheckpointFormatError(
        `${label}: saved with byteorder "${order}"; only little-endian is supported`,
      );
    }
  }
  const storages = new Map<string, StorageRef>();
  const resolve = storageResolver(storages, (ref) => {
    const entry = entries.get(`${prefix}data/${ref.key}`);
    if (!entry)
      throw new CheckpointFormatError(`${label}: storage entry ${prefix}data/${ref.key} is missing`);
    // The directory's size is checked now; the data is read (inflated, checksummed) when a kept
    // tensor first needs it, and must then be exactly that size.
    if (entry.size < ref.numel * DTYPE_BYTES[ref.dtype]) {
      throw new CheckpointFormatError(
        `${label}: storage ${entry.name} holds ${entry.size} bytes, ${ref.numel} ${ref.dtype} elements expected`,
      );
    }
    ref.load = () => zipEntryData(file, entry, label, inflate);
  });
  const pickle = zipEntryData(file, entries.get(pickles[0]!)!, label, inflate);
  const { value } = unpickle(pickle, 0, `${label} (${pickles[0]})`, resolve);
  return materializeStateDict(value, label, storages, keep);
}

/** Reads the central directory; ZIP64 sizes and offsets are honoured, multi-disk archives refused. */
function readZipDirectory(file: Uint8Array, label: string): Map<string, ZipEntry> {
  const fail: Fail = (message) => new CheckpointFormatError(`${label}: ${message}`);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const u64 = (at: number): number => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`ZIP field at byte ${at} is out of range`);
    return Number(v);
  };

  // The end record sits at the end, after an optional comment of up to 65535 bytes.
  let eocd = -1;
  for (let at = file.byteLength - EOCD_SIZE; at >= Math.max(0, file.byteLength - EOCD_SIZE - 0xffff); at--) {
    if (
      view.getUint32(at, true) === SIG_EOCD &&
      at + EOCD_SIZE + view.getUint16(at + 20, true) <= file.byteLength
    ) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw fail('ZIP archive without an end-of-central-directory record (truncated?)');

  let count = view.getUint16(eocd + 10, true);
  let directorySize = view.getUint32(eocd + 12, true);
  let directoryOffset = view.getUint32(eocd + 16, true);
  if (view.getUint16(eocd + 4, true) !== 0 || view.getUint16(eocd + 6, true) !== 0)
    throw fail('multi-disk ZIP archive');
  const locator = eocd - 20;
  if (locator >= 0 && view.getUint32(locator, true) === SIG_ZIP64_LOCATOR) {
    const record = u64(locator + 8);
    if (record + 56 > locator || view.getUint32(record, true) !== SIG_ZIP64_EOCD) {
      throw fail('ZIP64 end-of-central-directory record is missing or misplaced');
    }
    count = u64(record + 32);
    directorySize = u64(record + 40);
    directoryOffset = u64(record + 48);
  }
  if (directoryOffset + directorySize > eocd)
    throw fail('ZIP central directory lies outside the archive (truncated?)');

  const entries = new Map<string, ZipEntry>();
  let at = directoryOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directoryOffset + directorySize || view.getUint32(at, true) !== SIG_CENTRAL_HEADER) {
      throw fail(`ZIP central directory entry ${i} is corrupt`);
    }
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const name = new TextDecoder().decode(file.subarray(at + 46, at + 46 + nameLength));
    let size = view.getUint32(at + 24, true);
    let compressedSize = view.getUint32(at + 20, true);
    let localOffset = view.getUint32(at + 42, true);
    // A ZIP64 extra field holds, in this order, only the fields whose 32-bit slots are saturated.
    const extraEnd = at + 46 + nameLength + extraLength;
    if (extraEnd + commentLength > directoryOffset + directorySize)
      throw fail(`ZIP central directory entry ${i} runs past the directory`);
    for (let x = at + 46 + nameLength; x + 4 <= extraEnd; ) {
      const id = view.getUint16(x, true);
      const length = view.getUint16(x + 2, true);
      if (id === ZIP64_EXTRA_ID) {
        let field = x + 4;
        const next = (): number => {
          if (field + 8 > x + 4 + length) throw fail(`ZIP64 extra field of ${name} is too short`);
          const v = u64(field);
          field += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      x += 4 + length;
    }
    if (!entries.has(name)) {
      entries.set(name, {
        name,
        flags: view.getUint16(at + 8, true),
        method: view.getUint16(at + 10, true),
        crc: view.getUint32(at + 16, true),
        compressedSize,
        size,
        localOffset,
      });
    }
    at = extraEnd + commentLength;
  }
  return entries;
}

/** Bytes that the entries of one archive may still inflate to, of `total`. */
interface InflateBudget {
  readonly total: number;
  left: number;
}

/**
 * An entry's bytes: a view into the archive when stored, a fresh buffer when deflated. A deflated
 * entry never inflates past its declared size, which must be one deflate can produce from its
 * compressed size and must fit what is left of the archive's budget.
 */
function zipEntryData(file: Uint8Array, entry: ZipEntry, label: string, budget: InflateBudget): Uint8Array {
  const fail: Fail = (message) => new CheckpointFormatError(`${label}: ZIP entry ${entry.name}: ${message}`);
  const at = entry.localOffset;
  if (at + 30 > file.byteLength || readU32(file, at) !== SIG_LOCAL_HEADER)
    throw fail('local header is missing or corrupt');
  if (entry.flags & 0x1) throw fail('encrypted entries are not supported');
  // The local header's extra field can differ from the central one (torch pads it to align data).
  const start = at + 30 + readU16(file, at + 26) + readU16(file, at + 28);
  const end = start + entry.compressedSize;
  if (end > file.byteLength) throw fail(`data runs past the end of the file (truncated?)`);
  const raw = file.subarray(start, end);
  let data: Uint8Array;
  if (entry.method === 0) {
    data = raw;
  } else if (entry.method === 8) {
    if (entry.size > DEFLATE_MAX_RATIO * entry.compressedSize + 1024) {
      throw fail(
        `declares ${entry.size} bytes from ${entry.compressedSize} compressed bytes, more than deflate can produce`,
      );
    }
    if (entry.size > budget.left || entry.size > bufferConstants.MAX_LENGTH) {
      throw fail(
        `inflating its ${entry.size} bytes would take the archive past ${budget.total} inflated bytes, ` +
          `${INFLATE_BUDGET_RATIO} times its size (a ZIP bomb?)`,
      );
    }
    budget.left -= entry.size;
    try {
      // A bound of at least 1 byte (the option refuses 0); any excess fails the size check below.
      data = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
    } catch (cause) {
      const tooLarge = (cause as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE';
      throw new CheckpointFormatError(
        `${label}: ZIP entry ${entry.name}: ${
          tooLarge
            ? `inflates to more than the ${entry.size} bytes its directory entry declares`
            : 'deflate data is corrupt'
        }`,
        { cause },
      );
    }
  } else {
    throw fail(`compression method ${entry.method} is not supported (only stored and deflate)`);
  }
  if (data.byteLength !== entry.size)
    throw fail(`${data.byteLength} bytes, the directory says ${entry.size}`);
  // A writer that skips checksumming leaves the field 0; anything else must match.
  if (entry.crc !== 0 && crc32(data) >>> 0 !== entry.crc) throw fail('CRC-32 mismatch (corrupt file)');
  return data;
}

// ---------------------------------------------------------------------------------------------
// Materialization

function materializeStateDict(
  root: PyValue,
  label: string,
  storages: ReadonlyMap<string, StorageRef>,
  keep: ((key: string) => boolean) | undefined,
): Map<string, RawTensor> {
  let dict = root;
  // Training scripts often save {'state_dict': ..., 'epoch': ...}; HF files are the bare dict.
  if (dict instanceof Map && ![...dict.values()].some((v) => v instanceof TensorRef)) {
    const inner = dict.get('state_dict') ?? dict.get('model');
    if (inner instanceof Map) dict = inner;
  }
  if (!(dict instanceof Map)) {
    throw new CheckpointFormatError(`${label}: the checkpoint holds ${kindOf(root)}, a state dict expected`);
  }
  let storageBytesTotal = 0;
  for (const ref of storages.values()) if (!ref.base) storageBytesTotal += ref.numel * DTYPE_BYTES[ref.dtype];
  const copies: CopyBudget = {
    total: COPY_BUDGET_RATIO * storageBytesTotal,
    left: COPY_BUDGET_RATIO * storageBytesTotal,
  };
  const tensors = new Map<string, RawTensor>();
  for (const [key, value] of dict) {
    if (typeof key !== 'string')
      throw new CheckpointFormatError(`${label}: state-dict key ${describe(key)} is not a string`);
    if (keep && !keep(key)) continue;
    if (!(value instanceof TensorRef)) {
      throw new CheckpointFormatError(
        `${label}: state-dict entry ${key} is ${kindOf(value)}, a tensor expected`,
      );
    }
    tensors.set(key, materialize(key, value, label, copies));
  }
  return tensors;
}

/** Bytes that copies of non-contiguous tensors may still take, of `total`. */
interface CopyBudget {
  readonly total: number;
  left: number;
}

function storageBytes(ref: StorageRef, label: string): Uint8Array {
  const root = ref.base?.ref ?? ref;
  if (!root.bytes && root.load) root.bytes = root.load();
  if (!root.bytes) throw new CheckpointFormatError(`${label}: storage ${root.key} has no data`);
  if (!ref.base) return root.bytes;
  const size = DTYPE_BYTES[ref.dtype];
  return root.bytes.subarray(ref.base.offset * size, (ref.base.offset + ref.numel) * size);
}

/**
 * Copies a strided view into row-major order, or returns a view when it already is row-major. Every
 * element the view reaches must lie in its storage; a copy may hold no more elements than the
 * storage (a broadcast view larger than its data is not a saved weight), at most
 * {@link MAX_COPY_BYTES}, and must fit what is left of the checkpoint's copy budget.
 */
function materialize(name: string, t: TensorRef, label: string, copies: CopyBudget): RawTensor {
  const { dtype } = t.storage;
  const size = DTYPE_BYTES[dtype];
  const shape = [...t.shape];
  const fail = (message: string) =>
    new CheckpointFormatError(
      `${label}: tensor ${name} ${dims(shape)} with stride ${dims(t.stride)} from offset ${t.offset} ${message}`,
    );
  // Dimensions are safe integers, but their product need not be; it is only compared, never used
  // as a size, until it is known to fit the storage.
  let n = 1;
  for (const extent of shape) n *= extent;
  if (n === 0) return { dtype, shape, bytes: new Uint8Array(0) };
  const source = storageBytes(t.storage, label);
  const available = Math.floor(source.byteLength / size);

  let last = t.offset;
  let contiguous = true;
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const extent = shape[d]!;
    const stride = t.stride[d]!;
    last += (extent - 1) * stride;
    // A dimension of extent 1 is never stepped over, so its stride does not matter.
    if (extent !== 1 && stride !== expected) contiguous = false;
    expected *= extent;
  }
  if (last + 1 > available) throw fail(`overruns its storage of ${available} elements`);
  if (contiguous) return { dtype, shape, bytes: source.subarray(t.offset * size, (t.offset + n) * size) };

  if (n > available) throw fail(`has more elements than its storage holds (${available})`);
  const byteLength = n * size;
  if (byteLength > MAX_COPY_BYTES) throw fail(`would copy ${byteLength} bytes, over ${MAX_COPY_BYTES}`);
  if (byteLength > copies.left) {
    throw fail(
      `cannot be copied: the checkpoint's non-contiguous tensors would copy more than ${copies.total} bytes, ` +
        `${COPY_BUDGET_RATIO} times the size of its storages`,
    );
  }
  copies.left -= byteLength;

  const out = new Uint8Array(byteLength);
  const rank = shape.length;
  const inner = shape[rank - 1]!;
  const innerStride = t.stride[rank - 1]!;
  const index = new Array<number>(rank).fill(0);
  let rowStart = t.offset;
  for (let o = 0; o < n; o += inner) {
    if (innerStride === 1) {
      out.set(source.subarray(rowStart * size, (rowStart + inner) * size), o * size);
    } else {
      for (let j = 0, s = rowStart * size, dst = o * size; j < inner; j++, s += innerStride * size) {
        for (let b = 0; b < size; b++) out[dst++] = source[s + b]!;
      }
    }
    // Odometer over the outer dimensions.
    for (let d = rank - 2; d >= 0; d--) {
      index[d]!++;
      rowStart += t.stride[d]!;
      if (index[d]! < shape[d]!) break;
      rowStart -= t.stride[d]! * shape[d]!;
      index[d] = 0;
    }
  }
  return { dtype, shape, bytes: out };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function readU16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

function toInt(v: PyValue | undefined, what: string, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw fail(`${what} ${describe(v)} is not a non-negative integer`);
  return v;
}

/** Most dimensions a torch tensor can have. */
const MAX_RANK = 64;

function intList(v: PyValue | undefined, what: string, fail: Fail): number[] {
  if (!Array.isArray(v)) throw fail(`${what} is ${kindOf(v)}, a tuple expected`);
  if (v.length > MAX_RANK) throw fail(`${what} has ${v.length} dimensions, over torch's ${MAX_RANK}`);
  return v.map((x) => toInt(x, what, fail));
}

function kindOf(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (v instanceof Map) return 'a dict';
  if (Array.isArray(v)) return 'a tuple or list';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof StorageRef) return 'a storage';
  if (v instanceof TensorRef) return 'a tensor';
  return `a ${typeof v}`;
}

/** A short rendering of a value for error messages: bounded in depth and length, safe on cycles. */
function describe(v: PyValue | undefined, depth = 0): string {
  if (typeof v === 'string') {
    return v.length > DESCRIBE_STRING ? `${JSON.stringify(v.slice(0, DESCRIBE_STRING))}…` : JSON.stringify(v);
  }
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) {
    if (depth >= DESCRIBE_DEPTH) return v.length === 0 ? '()' : '(…)';
    const items = v.slice(0, DESCRIBE_ITEMS).map((item) => describe(item, depth + 1));
    if (v.length > DESCRIBE_ITEMS) items.push(`… ${v.length - DESCRIBE_ITEMS} more`);
    return `(${items.join(', ')})`;
  }
  return kindOf(v);
}

const DESCRIBE_DEPTH = 3;
const DESCRIBE_ITEMS = 8;
const DESCRIBE_STRING = 64;

/** A shape or stride for error messages, at most 8 dimensions of it. */
function dims(v: readonly number[]): string {
  return `[${v.slice(0, 8).join(', ')}${v.length > 8 ? `, … ${v.length - 8} more` : ''}]`;
}
