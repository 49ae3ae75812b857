// The recorder: keeps the room messages worth keeping (the recorded types of SPEC §7) in the message log.
// Writes are batched: what arrives in one turn of the event loop, or while a write is in flight, goes out as one
// statement, so recording never holds up the relay. A message is durable once its record() promise resolves.
import { type Envelope, type Participant, RECORDED_TYPES } from '@usher/protocol';
import {
  type MessageLog,
  type MessagePageResult,
  type MissedQuery,
  microsToIso,
  type PageQuery,
  rowEnvelope,
  type StoredMessage,
  type StoredPage,
} from '../storage/messages.ts';
import { Batcher, type Outcome } from './batcher.ts';
import { newId } from './ids.ts';

/** At most this many messages go out in one statement. */
const RECORD_BATCH = 1_000;

const RECORDED: ReadonlySet<string> = new Set(RECORDED_TYPES);

/** One thing a reconnecting participant or worker missed: a room message, or an arrival or departure. */
export type MissedItem =
  | { type: 'message'; message: Envelope }
  | { type: 'participant_joined' | 'participant_left'; at: string; participant: Participant };

export class Recorder {
  readonly #log: MessageLog;
  readonly #batcher: Batcher<StoredMessage, void>;
  /** the last message's write: batches are written in order, so once it is done every earlier one is */
  #last: Promise<unknown> = Promise.resolve();
  #lastUs = 0;
  #written: ((batch: readonly StoredMessage[]) => void) | null = null;

  /** @param track  runs a write loop as tracked background work (so shutdown waits for it) */
  constructor(log: MessageLog, track: (work: () => Promise<void>) => void) {
    this.#log = log;
    this.#batcher = new Batcher((_key, batch) => this.#write(batch), RECORD_BATCH, track);
  }

  /** Whether messages of this type are recorded (audio, partial chunks and control messages are not). */
  static records(type: string): boolean {
    return RECORDED.has(type);
  }

  /**
   * A new message sent at `nowMs`, with its id and its time in microseconds: unique and increasing on this
   * server, so the messages of a session stay in the order they were relayed even when the clock stands still.
   */
  envelope(nowMs: number, fields: Omit<Envelope, 'id' | 'at'>): StoredMessage {
    const us = nowMs * 1000;
    this.#lastUs = us > this.#lastUs ? us : this.#lastUs + 1;
    const atUs = this.#lastUs;
    return { message: { id: newId('m', nowMs), ...fields, at: microsToIso(atUs) }, atUs };
  }

  /**
   * Where the messages of this server stand at `nowMs` (µs): every message stamped so far is at or before it,
   * every later one after it. A socket that subscribes to a session's events at this moment gets, live, what
   * comes after this position; what came before is in the transcript (missed()).
   */
  position(nowMs: number): number {
    return Math.max(this.#lastUs, nowMs * 1000 - 1);
  }

  /**
   * What a reconnecting participant or worker missed (MessageLog.missed), including every message recorded
   * before the call: room messages, and arrivals and departures (recorded as messages, told as their own events).
   */
  async missed(q: MissedQuery): Promise<{ items: MissedItem[]; complete: boolean }> {
    await this.flushed();
    const { rows, complete } = await this.#log.missed(q);
    const items = rows.map((row): MissedItem => {
      const message = rowEnvelope(q.sessionId, row);
      if (message.type === 'participant_joined' || message.type === 'participant_left') {
        const { participant } = message.data as { participant: Participant };
        return { type: message.type, at: message.at, participant };
      }
      return { type: 'message', message };
    });
    return { items, complete };
  }

  /** Stores the message with the next batch; resolves once it is durable. */
  record(message: Envelope, atUs: number): Promise<void> {
    const done = this.#batcher.submit('', { message, atUs });
    this.#last = done;
    return done;
  }

  /** Hears each batch once it is durable (the metrics count recorded messages). */
  onWritten(listener: (batch: readonly StoredMessage[]) => void): void {
    this.#written = listener;
  }

  /** Resolves when every message recorded before the call is written (or failed). */
  async flushed(): Promise<void> {
    await this.#last.catch(() => {});
  }

  /** A page of a session's transcript, including every message recorded before the call. */
  async page(q: PageQuery): Promise<MessagePageResult> {
    await this.flushed();
    return this.#log.page(q);
  }

  /** The same page as stored (see MessageLog.pageRows). */
  async pageRows(q: PageQuery): Promise<StoredPage> {
    await this.flushed();
    return this.#log.pageRows(q);
  }

  async #write(batch: StoredMessage[]): Promise<Outcome<void>[]> {
    await this.#log.append(batch);
    try {
      this.#written?.(batch);
    } catch {
      // what listens is told, and cannot fail the write
    }
    return batch.map(() => ({ ok: true, value: undefined }));
  }
}
