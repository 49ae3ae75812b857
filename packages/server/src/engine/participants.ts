// Who is in each session's room on this server: a participant may hold several sockets (tabs, reconnects)
// and counts as joined from the first to the last.
import type { Participant } from '@usher/protocol';

export class Participants {
  readonly #rooms = new Map<string, Map<string, { participant: Participant; sockets: number }>>();

  /** Returns true when this is the participant's first socket in the session. */
  join(sessionId: string, participant: Participant): boolean {
    let room = this.#rooms.get(sessionId);
    if (!room) {
      room = new Map();
      this.#rooms.set(sessionId, room);
    }
    const entry = room.get(participant.identity);
    if (entry) {
      entry.sockets++;
      return false;
    }
    room.set(participant.identity, { participant, sockets: 1 });
    return true;
  }

  /** Whether the participant is in the session's room. */
  has(sessionId: string, identity: string): boolean {
    return this.#rooms.get(sessionId)?.has(identity) ?? false;
  }

  /** The participant, if in the session's room. */
  get(sessionId: string, identity: string): Participant | undefined {
    return this.#rooms.get(sessionId)?.get(identity)?.participant;
  }

  /** Returns the participant when its last socket left, else null. */
  leave(sessionId: string, identity: string): Participant | null {
    const entry = this.#rooms.get(sessionId)?.get(identity);
    if (!entry || --entry.sockets > 0) return null;
    return this.drop(sessionId, identity);
  }

  /** Takes the participant out of the session's room, whatever sockets it holds; returns it, or null. */
  drop(sessionId: string, identity: string): Participant | null {
    const room = this.#rooms.get(sessionId);
    const entry = room?.get(identity);
    if (!room || !entry) return null;
    room.delete(identity);
    if (room.size === 0) this.#rooms.delete(sessionId);
    return entry.participant;
  }

  /** Empties the session's room (it ended): everyone who was in it, whatever sockets they still hold. */
  clear(sessionId: string): Participant[] {
    const left = this.list(sessionId);
    this.#rooms.delete(sessionId);
    return left;
  }

  /** Every participant in every room, with its session. */
  *all(): Iterable<[string, Participant]> {
    for (const [sessionId, room] of this.#rooms)
      for (const { participant } of room.values()) yield [sessionId, participant];
  }

  list(sessionId: string): Participant[] {
    return [...(this.#rooms.get(sessionId)?.values() ?? [])].map((e) => e.participant);
  }
}
