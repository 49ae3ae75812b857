// Turns stored records into the API's resources (ISO-8601 times, public fields only).
import type { Project, Session, TimelineEntry } from '@usher/protocol';
import type { ProjectRecord, SessionRecord, TransitionRecord } from '../storage/records.ts';

/** A time (epoch ms) as the API writes it: ISO-8601, UTC. */
export const iso = (ms: number) => new Date(ms).toISOString();
export const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export function sessionView(
  s: SessionRecord,
  extra: {
    queuePosition?: number | null;
    estimatedWaitMs?: number | null;
    timeline?: TransitionRecord[];
  } = {},
): Session {
  const view: Session = {
    id: s.id,
    projectId: s.projectId,
    region: s.region,
    agentType: s.agentType,
    config: s.config,
    state: s.state,
    workerId: s.workerId,
    queuePosition: extra.queuePosition ?? null,
    estimatedWaitMs: extra.estimatedWaitMs ?? null,
    restarts: s.restarts,
    createdAt: iso(s.createdAt),
    updatedAt: iso(s.updatedAt),
    activeAt: isoOrNull(s.activeAt),
    endedAt: isoOrNull(s.endedAt),
    endCode: s.endCode,
    endReason: s.endReason,
    outcome: s.outcome,
  };
  if (extra.timeline) view.timeline = extra.timeline.map(timelineView);
  return view;
}

export function timelineView(t: TransitionRecord): TimelineEntry {
  return { from: t.from, to: t.to, at: iso(t.at), cause: t.cause };
}

export function projectView(p: ProjectRecord): Project {
  return { ...p.settings, createdAt: iso(p.createdAt), updatedAt: iso(p.updatedAt) };
}
