// Log lines for what happens to sessions, with their ids: each state change (info), each session error (warn),
// participants joining and leaving (debug). Only the events this server published: each is logged once in a
// cluster, by the server that made it happen.
import type { SessionEvent } from '@usher/protocol';
import type { EventHub } from '../engine/event-hub.ts';
import type { Logger } from '../util/logger.ts';
import type { SessionDirectory } from './session-directory.ts';

export function logSessionEvents(hub: EventHub, sessions: SessionDirectory, log: Logger): () => void {
  return hub.subscribeAll((e, local) => {
    if (!local || !logged(e)) return;
    sessions.with(e.sessionId, (key) => {
      const ids = { sessionId: e.sessionId, projectId: key.projectId, region: key.region };
      switch (e.type) {
        case 'session.status_changed':
          log.info(
            {
              ...ids,
              state: e.status,
              previous: e.previous,
              cause: e.cause,
              ...(e.status === 'ended'
                ? { endCode: e.endCode, endReason: e.endReason, outcome: e.outcome }
                : {}),
            },
            `session ${e.status}`,
          );
          return;
        case 'session.error':
          log.warn({ ...ids, code: e.code, recoverable: e.recoverable }, e.message);
          return;
        case 'session.participant_joined':
        case 'session.participant_left':
          log.debug(
            { ...ids, participant: e.participant.identity, kind: e.participant.kind },
            e.type === 'session.participant_joined' ? 'participant joined' : 'participant left',
          );
          return;
      }
    });
  });
}

/** Room messages, AFK warnings and queue positions are too many to log. */
function logged(e: SessionEvent): boolean {
  return (
    e.type === 'session.status_changed' ||
    e.type === 'session.error' ||
    e.type === 'session.participant_joined' ||
    e.type === 'session.participant_left'
  );
}
