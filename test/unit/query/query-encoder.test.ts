import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchingEmbedder } from '../../../functions/query/src/query-encoder.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { type TokenIdEncoder, WorkerEncoder } from '../../../layers/encoder/src/worker-encoder.ts';
import { CLINICAL_SENTENCES, tempDir, tinyBundle } from '../../helpers/encoder.ts';

let root: { dir: string; cleanup: () => Promise<void> };
let bundle: string;
let encoder: Encoder;

beforeAll(async () => {
  root = await tempDir('query-encoder-');
  bundle = await tinyBundle(root.dir);
  encoder = await Encoder.load(bundle, { provider: 'cpu', threads: 1 });
});
afterAll(async () => {
  await encoder.close();
  await root.cleanup();
});

/**
 * The real encoder behind a gate: records the size of every batch it is given, and holds each
 * batch until the test opens the gate (or runs it at once when `held` is false).
 */
class GatedEncoder implements TokenIdEncoder {
  readonly batches: number[] = [];
  private waiting: (() => void)[] = [];
  held = true;
  failNext = false;

  constructor(
    private readonly inner: Encoder,
    /** CPU threads it says a batch runs on (none: the embedder counts one). */
    readonly threads?: number,
  ) {}

  get info() {
    return this.inner.info;
  }
  get dims() {
    return this.inner.dims;
  }
  get provider() {
    return this.inner.provider;
  }
  get variant() {
    return this.inner.variant;
  }
  get tokenizer() {
    return this.inner.tokenizer;
  }
  tokenize(texts: readonly string[]) {
    return this.inner.tokenize(texts);
  }
  async embed(texts: readonly string[], options?: Parameters<Encoder['embed']>[1]) {
    await this.gate(texts.length);
    return this.inner.embed(texts, options);
  }
  async embedIds(ids: readonly number[][], options?: Parameters<Encoder['embedIds']>[1]) {
    await this.gate(ids.length);
    return this.inner.embedIds(ids, options);
  }
  /** Records a batch, holds it while the gate is closed, and fails it when told to. */
  private async gate(size: number): Promise<void> {
    this.batches.push(size);
    if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('session failed');
    }
  }
  /** Lets every held batch run. */
  open(): void {
    for (const go of this.waiting.splice(0)) go();
  }
  async close(): Promise<void> {}
}

/** Resolves once `predicate` holds (polled on the event loop), or fails after a second. */
async function until(predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 1000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

const queries = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} query ${i}`);

describe('BatchingEmbedder', () => {
  it('embeds a query to the vector the encoder gives it, and says when it was cut', async () => {
    const embedder = new BatchingEmbedder(encoder);
    const [text] = CLINICAL_SENTENCES;
    const { vector, truncated } = await embedder.embed(text!);
    expect(Array.from(vector)).toEqual(Array.from((await encoder.embed([text!])).embeddings[0]!));
    expect(truncated).toBe(false);
    const long = 'chest pain '.repeat(2000);
    expect((await embedder.embed(long)).truncated).toBe(true);
    expect(embedder.fingerprint).toBe(encoder.info.fingerprint);
    expect(embedder.dims).toBe(encoder.dims);
  });

  it('embeds the queries that arrive while the encoder is busy together, in one batch', async () => {
    const gated = new GatedEncoder(encoder);
    const embedder = new BatchingEmbedder(gated, { cacheSize: 0 });
    const first = embedder.embed('first query');
    await until(() => gated.batches.length === 1);
    const rest = queries(5, 'later').map((q) => embedder.embed(q));
    gated.held = false;
    gated.open();
    const vectors = await Promise.all([first, ...rest]);
    expect(gated.batches).toEqual([1, 5]);
    // Each batch gives what the encoder gives for the same texts together.
    const expected = [
      ...(await encoder.embed(['first query'])).embeddings,
      ...(await encoder.embed(queries(5, 'later'))).embeddings,
    ];
    vectors.forEach((v, i) => {
      expect(Array.from(v.vector)).toEqual(Array.from(expected[i]!));
    });
  });

  it('never holds back a lone query, whatever the minimum batch', async () => {
    const gated = new GatedEncoder(encoder);
    gated.held = false;
    const embedder = new BatchingEmbedder([gated, new GatedEncoder(encoder)], {
      minBatch: 8,
      maxWaitMs: 60_000,
    });
    await embedder.embed('only query');
    expect(gated.batches).toEqual([1]);
  });

  it('lets an idle encoder wait for a fuller batch while another is busy, up to maxWaitMs', async () => {
    const a = new GatedEncoder(encoder);
    const b = new GatedEncoder(encoder);
    b.held = false;
    const embedder = new BatchingEmbedder([a, b], {
      minBatch: 3,
      maxWaitMs: 60_000,
      cacheSize: 0,
      threadBudget: 2,
    });
    const busy = embedder.embed('keeps a busy');
    await until(() => a.batches.length === 1);
    // Two queries are fewer than minBatch: b waits instead of running batches of one.
    const two = queries(2, 'small').map((q) => embedder.embed(q));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(b.batches).toEqual([]);
    // The third fills the batch: b takes all three at once.
    const three = embedder.embed('small query 2');
    await Promise.all([...two, three]);
    expect(b.batches).toEqual([3]);

    // With a short maxWaitMs, a single query goes after the wait even while a is busy.
    const hurried = new BatchingEmbedder([a, b], {
      minBatch: 3,
      maxWaitMs: 15,
      cacheSize: 0,
      threadBudget: 2,
    });
    const keep = hurried.embed('keeps a busy again');
    await until(() => a.batches.length === 2);
    const started = performance.now();
    await hurried.embed('alone while a is busy');
    expect(performance.now() - started).toBeGreaterThanOrEqual(10);
    expect(b.batches).toEqual([3, 1]);
    a.held = false;
    a.open();
    await Promise.all([busy, keep]);
  });

  it('runs encoders side by side only while their threads fit in the budget', async () => {
    const a = new GatedEncoder(encoder, 1);
    const b = new GatedEncoder(encoder, 1);
    b.held = false;
    const embedder = new BatchingEmbedder([a, b], { minBatch: 1, cacheSize: 0, threadBudget: 1 });
    const busy = embedder.embed('keeps a busy');
    await until(() => a.batches.length === 1);
    const next = embedder.embed('waits for a core');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(b.batches).toEqual([]);
    a.held = false;
    a.open();
    await Promise.all([busy, next]);
    // Once a is done, the waiting query goes to the first idle encoder of the pool: a again.
    expect(a.batches).toEqual([1, 1]);
    expect(b.batches).toEqual([]);

    // An encoder wider than the whole budget still runs, alone.
    const wide = new GatedEncoder(encoder, 8);
    wide.held = false;
    const alone = new BatchingEmbedder(wide, { cacheSize: 0, threadBudget: 2 });
    await alone.embed('on more threads than the budget');
    expect(wide.batches).toEqual([1]);
  });

  it('gives a lone query to the widest encoder, and shares batches among narrower ones side by side', async () => {
    const wide = new GatedEncoder(encoder, 2);
    const narrow = [new GatedEncoder(encoder, 1), new GatedEncoder(encoder, 1)];
    for (const n of narrow) n.held = true;
    const embedder = new BatchingEmbedder([wide, ...narrow], {
      minBatch: 1,
      cacheSize: 0,
      threadBudget: 2,
      wideBatch: 2,
    });
    const lone = embedder.embed('lone query');
    await until(() => wide.batches.length === 1);
    // The wide session holds both cores: five more queries wait for it, then split 3 + 2.
    const five = queries(5, 'burst').map((q) => embedder.embed(q));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(narrow.map((n) => n.batches)).toEqual([[], []]);
    wide.held = false;
    wide.open();
    await lone;
    await until(() => narrow.every((n) => n.batches.length === 1));
    expect(narrow.map((n) => n.batches)).toEqual([[3], [2]]);
    expect(wide.batches).toEqual([1]);
    // While the narrow ones run, the wide one does not fit beside them: a query waits for a narrow one.
    const during = embedder.embed('arrives under load');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(wide.batches).toEqual([1]);
    narrow[1]!.held = false;
    narrow[1]!.open();
    await until(() => narrow[1]!.batches.length === 2);
    expect(narrow[1]!.batches).toEqual([2, 1]);
    narrow[0]!.held = false;
    narrow[0]!.open();
    await Promise.all([...five, during]);
    expect(wide.batches).toEqual([1]);
  });

  it('rejects every query of a failed batch and goes on with the next', async () => {
    const gated = new GatedEncoder(encoder);
    const embedder = new BatchingEmbedder(gated, { cacheSize: 0 });
    const first = embedder.embed('first');
    await until(() => gated.batches.length === 1);
    gated.failNext = true;
    gated.open();
    await expect(first).rejects.toThrow('session failed');
    gated.held = false;
    const after = await embedder.embed('after the failure');
    expect(after.vector).toHaveLength(encoder.dims);
  });

  it('remembers recent query vectors, and forgets the oldest past cacheSize', async () => {
    const gated = new GatedEncoder(encoder);
    gated.held = false;
    const embedder = new BatchingEmbedder(gated, { cacheSize: 2 });
    const a1 = await embedder.embed('query a');
    await embedder.embed('query b');
    expect(await embedder.embed('query a')).toBe(a1);
    expect(gated.batches).toEqual([1, 1]);
    await embedder.embed('query c'); // evicts b, the least recently used
    await embedder.embed('query b');
    expect(gated.batches).toEqual([1, 1, 1, 1]);
  });

  it('with maxBatch 1 embeds every query alone, on worker encoders as in this thread', async () => {
    // int8 quantizes each batch with one activation scale, so a vector depends slightly on the
    // queries batched with it; alone, it is the same wherever and whenever it is computed.
    const workers = await Promise.all(
      [0, 1].map(() => WorkerEncoder.start(bundle, { provider: 'cpu', threads: 1 })),
    );
    const embedder = new BatchingEmbedder(workers, { cacheSize: 0, maxBatch: 1 });
    try {
      const got = await Promise.all(CLINICAL_SENTENCES.map((s) => embedder.embed(s)));
      for (const [i, s] of CLINICAL_SENTENCES.entries()) {
        const alone = (await encoder.embed([s])).embeddings[0]!;
        expect(Array.from(got[i]!.vector)).toEqual(Array.from(alone));
      }
    } finally {
      await embedder.close();
    }
  });

  it('takes more encoders of the same model, and closes one added after close', async () => {
    const a = new GatedEncoder(encoder);
    const embedder = new BatchingEmbedder(a, { cacheSize: 0, minBatch: 1, threadBudget: 2 });
    const first = embedder.embed('keeps a busy');
    await until(() => a.batches.length === 1);
    const b = new GatedEncoder(encoder);
    b.held = false;
    await embedder.add(b);
    await embedder.embed('runs on b while a is busy');
    expect(b.batches).toEqual([1]);
    a.held = false;
    a.open();
    await first;
    await embedder.firstBatch;

    const other = { ...b, info: { ...encoder.info, fingerprint: 'sha256:another' }, close: async () => {} };
    await expect(embedder.add(other as unknown as TokenIdEncoder)).rejects.toThrow(RangeError);
    await embedder.close();
    let closed = false;
    const late = Object.assign(new GatedEncoder(encoder), {
      close: async () => {
        closed = true;
      },
    });
    await embedder.add(late);
    expect(closed).toBe(true);
    expect(embedder.encoders).toHaveLength(2);
  });

  it('fails the queries still waiting when closed, and refuses new ones', async () => {
    const gated = new GatedEncoder(encoder);
    const embedder = new BatchingEmbedder(gated, { cacheSize: 0 });
    const running = embedder.embed('in flight');
    await until(() => gated.batches.length === 1);
    const waiting = [embedder.embed('waiting 1'), embedder.embed('waiting 2')];
    const closing = embedder.close();
    for (const w of waiting) await expect(w).rejects.toThrow(/closed/);
    await expect(embedder.embed('after close')).rejects.toThrow(/closed/);
    gated.open();
    expect((await running).vector).toHaveLength(encoder.dims);
    await closing;
    expect(gated.batches).toEqual([1]);
  });

  it('leaves a model worker that exited and hands its queries to the others', async () => {
    const [first, second] = await Promise.all(
      [0, 1].map(() => WorkerEncoder.start(bundle, { provider: 'cpu', threads: 1 })),
    );
    const embedder = new BatchingEmbedder([first!, second!], { cacheSize: 0 });
    try {
      await first!.close();
      expect(first!.exited).toBe(true);
      // The lone query goes to the first worker, finds it gone, and is embedded by the second.
      const [sentence] = CLINICAL_SENTENCES;
      const { vector } = await embedder.embed(sentence!);
      expect(Array.from(vector)).toEqual(Array.from((await encoder.embed([sentence!])).embeddings[0]!));
      expect(embedder.encoders).toEqual([second]);
      await second!.close();
      await expect(embedder.embed('no worker left')).rejects.toThrow(/every model worker has exited/);
    } finally {
      await embedder.close();
    }
  });
});
