// Group commit: calls that arrive together for the same key are handed to one run (one transaction), in
// order. A run that throws is retried item by item, so one bad item never fails the others.

export type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

export class Batcher<I, R> {
  readonly #run: (key: string, items: I[]) => Promise<Outcome<R>[]>;
  readonly #max: number;
  readonly #track: (work: () => Promise<void>) => void;
  readonly #queues = new Map<
    string,
    { items: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[]; running: boolean }
  >();

  /**
   * @param run  handles a batch and returns one outcome per item, in order
   * @param max  the most items in one batch
   * @param track  runs a loop as tracked background work (so shutdown can wait for it)
   */
  constructor(
    run: (key: string, items: I[]) => Promise<Outcome<R>[]>,
    max: number,
    track: (work: () => Promise<void>) => void,
  ) {
    this.#run = run;
    this.#max = max;
    this.#track = track;
  }

  submit(key: string, item: I): Promise<R> {
    return new Promise((resolve, reject) => {
      let q = this.#queues.get(key);
      if (!q) {
        q = { items: [], running: false };
        this.#queues.set(key, q);
      }
      q.items.push({ item, resolve, reject });
      this.#start(key, q);
    });
  }

  #start(key: string, q: { items: unknown[]; running: boolean }): void {
    if (q.running || q.items.length === 0) return;
    q.running = true;
    // wait one turn of the event loop, so that what arrives together is batched together
    setImmediate(() => this.#track(() => this.#loop(key)));
  }

  async #loop(key: string): Promise<void> {
    const q = this.#queues.get(key)!;
    try {
      while (q.items.length > 0) {
        const batch = q.items.splice(0, this.#max);
        let outcomes: Outcome<R>[];
        try {
          outcomes = await this.#run(
            key,
            batch.map((b) => b.item),
          );
        } catch (err) {
          if (batch.length === 1) outcomes = [{ ok: false, error: err }];
          else {
            outcomes = [];
            for (const b of batch) {
              try {
                outcomes.push(...(await this.#run(key, [b.item])));
              } catch (e) {
                outcomes.push({ ok: false, error: e });
              }
            }
          }
        }
        batch.forEach((b, i) => {
          const o = outcomes[i]!;
          if (o.ok) b.resolve(o.value);
          else b.reject(o.error);
        });
      }
    } finally {
      q.running = false;
      this.#start(key, q);
    }
  }
}
