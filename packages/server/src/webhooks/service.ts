// Webhooks on one server: the session events it publishes are queued, once per endpoint that wants them, in
// batches outside the engine's transactions (so webhooks never slow the engine), and its dispatcher sends them.
import { randomBytes } from 'node:crypto';
import type { SessionEvent } from '@usher/protocol';
import { Batcher, type Outcome } from '../engine/batcher.ts';
import type { Clock, TimerHandle } from '../engine/clock.ts';
import type { EventHub } from '../engine/event-hub.ts';
import type { SessionDirectory } from '../observability/session-directory.ts';
import type { Db } from '../storage/db.ts';
import { type DeliveryWithPayload, type NewDelivery, WebhookLog } from '../storage/webhooks.ts';
import type { Logger } from '../util/logger.ts';
import { Dispatcher } from './dispatcher.ts';
import { type ResolvedEndpoint, resolveEndpoints, type WebhookEndpoint, wants } from './endpoints.ts';
import { RETRY_SCHEDULE_MS } from './schedule.ts';

/** How deliveries are made; every field has a default. */
export interface WebhookDeliveryOptions {
  /** attempts before a delivery is marked failed (default 8) */
  maxAttempts?: number;
  /** how long one POST may take, answer included (default 10 s) */
  timeoutMs?: number;
  /** the waits after the 1st, 2nd, … failed attempt, the last repeating (default 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h); each is jittered by ±20 % */
  retryScheduleMs?: readonly number[];
  /** delivered and failed deliveries are deleted from the log this long after they were queued (default 7 days; 0 keeps them) */
  retentionMs?: number;
  /**
   * How often each endpoint's queue is looked at besides when this server queues something (clock time):
   * it picks up what another server queued and could not send. Default 30 s when servers share the
   * database, otherwise 0 (never: this server queued everything there is).
   */
  pollMs?: number;
}

export interface WebhooksOptions {
  db: Db;
  hub: EventHub;
  /** the server's session directory: each event's project */
  sessions: SessionDirectory;
  clock: Clock;
  serverId: string;
  endpoints: readonly WebhookEndpoint[];
  delivery?: WebhookDeliveryOptions;
  log: Logger;
  /** whether other servers share the database */
  shared: boolean;
  userAgent: string;
  /** for tests: the jitter's randomness, the signature's wall clock, the HTTP client */
  random?: () => number;
  wallNow?: () => number;
  fetch?: typeof fetch;
}

/** The most events queued in one statement. */
const ENQUEUE_BATCH = 500;
/** Waits before each new try to queue events whose write failed (the database away); then they are given up. */
const ENQUEUE_RETRY_MS = [1_000, 2_000, 5_000, 10_000, 30_000, 60_000];
/** Events kept for another try at most; past it, the newest failures are given up at once. */
const MAX_ENQUEUE_RETRIES = 10_000;

/**
 * An event heard, with the ids of its deliveries by endpoint (made at its first write and kept, so that a retried
 * write repeats them).
 */
interface Heard {
  event: SessionEvent;
  ids: (string | undefined)[];
  at: number;
}
const PRUNE_EVERY_MS = 3_600_000;

export class Webhooks {
  /** the delivery log */
  readonly deliveries: WebhookLog;
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly #o: WebhooksOptions;
  readonly #dispatcher: Dispatcher;
  readonly #batcher: Batcher<Heard, void>;
  /** events whose write failed, waiting for another try */
  readonly #retrying = new Map<Heard, TimerHandle>();
  readonly #pending = new Set<Promise<unknown>>();
  /** event types some endpoint wants: others cost nothing */
  readonly #wanted: ReadonlySet<string>;
  readonly #retentionMs: number;
  #unsubscribe: (() => void) | null = null;
  #prune: TimerHandle | null = null;
  #closed = false;
  #idMs = 0;
  #idSeq = 0;

  /** Checks the endpoints (throws WebhookConfigError naming the field to fix); no I/O. */
  constructor(options: WebhooksOptions) {
    this.#o = options;
    this.endpoints = resolveEndpoints(options.endpoints);
    this.#wanted = new Set(this.endpoints.flatMap((e) => [...e.events]));
    this.deliveries = new WebhookLog(options.db);
    const d = options.delivery ?? {};
    const maxAttempts = d.maxAttempts ?? 8;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
      throw new RangeError(`webhookDelivery.maxAttempts must be a whole number ≥ 1; got ${maxAttempts}`);
    const timeoutMs = d.timeoutMs ?? 10_000;
    if (!(timeoutMs > 0)) throw new RangeError(`webhookDelivery.timeoutMs must be > 0; got ${timeoutMs}`);
    const retryScheduleMs = d.retryScheduleMs ?? RETRY_SCHEDULE_MS;
    if (retryScheduleMs.length === 0 || retryScheduleMs.some((ms) => !(ms >= 0)))
      throw new RangeError('webhookDelivery.retryScheduleMs must be a non-empty list of waits ≥ 0 in ms');
    this.#retentionMs = d.retentionMs ?? 7 * 86_400_000;
    this.#dispatcher = new Dispatcher({
      log: this.deliveries,
      endpoints: this.endpoints,
      clock: options.clock,
      serverId: options.serverId,
      logger: options.log,
      timeoutMs,
      maxAttempts,
      retryScheduleMs,
      pollMs: d.pollMs ?? (options.shared ? 30_000 : 0),
      userAgent: options.userAgent,
      ...(options.random ? { random: options.random } : {}),
      ...(options.wallNow ? { wallNow: options.wallNow } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    this.#batcher = new Batcher(
      (_key, heard) => this.#enqueue(heard),
      ENQUEUE_BATCH,
      (work) => this.#track(work()),
    );
  }

  /**
   * Listens to the events this server publishes (call before the engine starts, so that what it does on
   * recovery is heard) and starts sending, deliveries left by an earlier run included.
   */
  async start(): Promise<void> {
    if (this.endpoints.length > 0)
      this.#unsubscribe = this.#o.hub.subscribeAll((e, local) => this.#heard(e, local));
    await this.#dispatcher.start();
    if (this.#retentionMs > 0) this.#schedulePrune();
  }

  /** Resolves when every event heard so far is queued and every due delivery has been attempted. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    await this.#dispatcher.idle();
  }

  /** Queues a delivery again, due now; undefined when there is none with this id. */
  async retry(id: string): Promise<DeliveryWithPayload | undefined> {
    const d = await this.deliveries.retry(id, this.#o.clock.now());
    if (d) this.#track(this.#dispatcher.wake(d.endpointUrl));
    return d;
  }

  /**
   * Stops listening, queues what was heard, and stops sending at once: sends in flight are given back, and what is
   * still due waits in the table for the next start (or another server).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#prune) this.#o.clock.clearTimer(this.#prune);
    // events waiting for another try get one now
    for (const [heard, timer] of this.#retrying) {
      this.#o.clock.clearTimer(timer);
      this.#submit(heard, ENQUEUE_RETRY_MS.length);
    }
    this.#retrying.clear();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    await this.#dispatcher.close();
  }

  #heard(event: SessionEvent, local: boolean): void {
    // another server's event is that server's to queue
    if (!local || this.#closed || !this.#wanted.has(event.type)) return;
    this.#submit({ event, ids: [], at: this.#o.clock.now() }, 0);
  }

  /** Queues the event (tracked, so settled() and close() wait for it); a failed write is tried again later. */
  #submit(heard: Heard, attempt: number): void {
    const { event } = heard;
    this.#track(
      this.#batcher.submit('', heard).catch((err) => {
        const wait = ENQUEUE_RETRY_MS[attempt];
        const fields = { err, sessionId: event.sessionId, type: event.type, attempt: attempt + 1 };
        if (wait === undefined || this.#closed || this.#retrying.size >= MAX_ENQUEUE_RETRIES) {
          this.#o.log.error(fields, 'webhooks: an event could not be queued; it is not sent');
          return;
        }
        this.#o.log.warn(fields, `webhooks: an event could not be queued; trying again in ${wait / 1000} s`);
        const timer = this.#o.clock.setTimer(this.#o.clock.now() + wait, () => {
          this.#retrying.delete(heard);
          this.#submit(heard, attempt + 1);
        });
        this.#retrying.set(heard, timer);
      }),
    );
  }

  async #enqueue(heard: Heard[]): Promise<Outcome<void>[]> {
    const keys = await this.#o.sessions.keys(heard.map((h) => h.event.sessionId));
    const rows: NewDelivery[] = [];
    for (const { event: e, ids, at } of heard) {
      const projectId = keys.get(e.sessionId)?.projectId;
      if (projectId === undefined) {
        this.#o.log.warn(
          { sessionId: e.sessionId, type: e.type },
          'webhooks: an event of an unknown session',
        );
        continue;
      }
      const to: { ep: ResolvedEndpoint; id: string }[] = [];
      this.endpoints.forEach((ep, i) => {
        if (!wants(ep, e.type, projectId)) return;
        ids[i] ??= this.#newId(at);
        to.push({ ep, id: ids[i] });
      });
      if (to.length === 0) continue;
      const { type, sessionId, ...rest } = e;
      const payload = JSON.stringify({
        type,
        timestamp: e.at,
        data: { type, sessionId, projectId, ...rest },
      });
      for (const { ep, id } of to)
        rows.push({ id, endpointUrl: ep.url, eventType: type, sessionId, projectId, payload, createdAt: at });
    }
    await this.deliveries.enqueue(rows);
    for (const url of new Set(rows.map((r) => r.endpointUrl))) this.#track(this.#dispatcher.wake(url));
    return heard.map(() => ({ ok: true, value: undefined }));
  }

  /**
   * `whd_` + time + a counter of this server's + random: the ids of one server sort in the order it queued them
   * (the engine's ids restart their counter whenever a call brings another time, so they cannot be used here).
   */
  #newId(now: number): string {
    if (now > this.#idMs) {
      this.#idMs = now;
      this.#idSeq = 0;
    } else this.#idSeq++;
    const time = this.#idMs.toString(36).padStart(9, '0');
    return `whd_${time}${this.#idSeq.toString(36).padStart(5, '0')}${randomBytes(4).toString('hex')}`;
  }

  #schedulePrune(): void {
    const clock = this.#o.clock;
    this.#prune = clock.setTimer(clock.now() + PRUNE_EVERY_MS, async () => {
      this.#prune = null;
      if (this.#closed) return;
      try {
        const n = await this.deliveries.prune(clock.now() - this.#retentionMs);
        if (n > 0) this.#o.log.debug({ deleted: n }, 'webhooks: pruned old deliveries');
      } catch (err) {
        this.#o.log.error({ err }, 'webhooks: pruning the delivery log failed');
      }
      if (!this.#closed) this.#schedulePrune();
    });
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.catch((err) => this.#o.log.error({ err }, 'webhooks: background work failed'));
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }
}
