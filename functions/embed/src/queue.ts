/**
 * A bounded async queue between two pipeline stages. The bound is a weight (e.g. chunks), so a
 * fast producer waits instead of filling memory, and a consumer that asks for `min` weight waits
 * until that much is queued or the producer is done.
 */
export class WeightedQueue<T> {
  private readonly items: { item: T; weight: number }[] = [];
  private queued = 0;
  private closed = false;
  private failure: unknown;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  /** @param capacity weight at which `push` waits (an item heavier than this alone is still admitted) */
  constructor(private readonly capacity: number) {}

  /** Weight queued now. */
  get weight(): number {
    return this.queued;
  }

  /** Adds an item, waiting while the queue is at capacity. */
  async push(item: T, weight: number): Promise<void> {
    while (this.queued > 0 && this.queued + weight > this.capacity && !this.failure) {
      await new Promise<void>((resolve) => {
        this.wakeProducer = resolve;
      });
    }
    if (this.failure) throw this.failure;
    this.items.push({ item, weight });
    this.queued += weight;
    this.wakeConsumer?.();
  }

  /** Marks the end of input. */
  close(): void {
    this.closed = true;
    this.wakeConsumer?.();
  }

  /** Fails both sides: a waiting producer throws `error`, and so does the consumer's next `take`. */
  fail(error: unknown): void {
    this.failure = error;
    this.wakeConsumer?.();
    this.wakeProducer?.();
  }

  /**
   * Takes items of at least `min` weight in all (fewer only at the end), and at most `max` weight
   * (but always at least one item). Returns an empty list when the queue is closed and empty.
   * Resolves `waitedMs` with the time spent waiting for input.
   */
  async take(min: number, max: number): Promise<{ items: T[]; waitedMs: number }> {
    const t0 = performance.now();
    while (this.queued < min && !this.closed && !this.failure) {
      await new Promise<void>((resolve) => {
        this.wakeConsumer = resolve;
      });
    }
    if (this.failure) throw this.failure;
    const out: T[] = [];
    let taken = 0;
    while (this.items.length > 0) {
      const next = this.items[0]!;
      if (out.length > 0 && taken + next.weight > max) break;
      this.items.shift();
      out.push(next.item);
      taken += next.weight;
    }
    this.queued -= taken;
    this.wakeProducer?.();
    return { items: out, waitedMs: performance.now() - t0 };
  }
}
