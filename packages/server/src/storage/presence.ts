// Who was in a session's room and when, read back from its recorded participant_joined and participant_left
// messages: the same on every server, and after the session ended.
import type { Participant } from '@usher/protocol';
import type { Queryable } from './db.ts';

export interface PresenceEntry {
  participant: Participant;
  /** epoch microseconds, as the message log keeps times */
  joinedUs: number;
  leftUs: number | null;
}

interface PresenceRow {
  at: number;
  type: 'participant_joined' | 'participant_left';
  from_identity: string;
  from_kind: string;
  data: string;
}

/**
 * Each stay of each participant in the session's room, oldest first. A participant joined through several
 * servers at once (each records its own join) stays until the last of them records it left; one who joins
 * again later has a second entry.
 */
export async function presence(q: Queryable, sessionId: string): Promise<PresenceEntry[]> {
  const rows = await q.all<PresenceRow>(
    `SELECT at, type, from_identity, from_kind, data FROM messages
     WHERE session_id = ? AND type IN ('participant_joined', 'participant_left')
     ORDER BY at, id`,
    [sessionId],
  );
  return stays(rows);
}

export function stays(rows: readonly PresenceRow[]): PresenceEntry[] {
  const entries: PresenceEntry[] = [];
  const open = new Map<string, { entry: PresenceEntry; joins: number }>();
  for (const r of rows) {
    const at = Number(r.at);
    const identity = r.from_identity;
    const here = open.get(identity);
    if (r.type === 'participant_joined') {
      if (here) {
        here.joins++;
        continue;
      }
      const entry: PresenceEntry = { participant: participantOf(r), joinedUs: at, leftUs: null };
      entries.push(entry);
      open.set(identity, { entry, joins: 1 });
    } else if (here && --here.joins === 0) {
      here.entry.leftUs = at;
      open.delete(identity);
    }
  }
  return entries;
}

/** The participant the message's data names (with its display name), or its sender. */
function participantOf(r: PresenceRow): Participant {
  const fallback: Participant = { identity: r.from_identity, kind: r.from_kind as Participant['kind'] };
  try {
    const p = (JSON.parse(r.data) as { participant?: Partial<Participant> } | null)?.participant;
    if (!p || p.identity !== r.from_identity) return fallback;
    return typeof p.name === 'string' ? { ...fallback, name: p.name } : fallback;
  } catch {
    return fallback;
  }
}
