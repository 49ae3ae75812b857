// Pure rules about projects: can a session run, what timers apply, how long to wait.
import { type ProjectSettings, TimerKind } from '../storage/records.ts';

/** Why a session for this project cannot run, or null if it can. */
export function unrunnableReason(
  p: ProjectSettings,
  region: string,
  agentType: string | null,
): string | null {
  if (!p.worker) return `project "${p.id}" has no worker configured`;
  const pool = p.regions[region];
  if (!pool)
    return `project "${p.id}" has no region "${region}" (regions: ${Object.keys(p.regions).join(', ') || 'none'})`;
  if (pool.max === 0) return `project "${p.id}" allows no workers in region "${region}" (max is 0)`;
  if (agentType !== null && p.agentTypes.length > 0 && !p.agentTypes.includes(agentType)) {
    return `project "${p.id}" has no agent type "${agentType}" (agent types: ${p.agentTypes.join(', ')})`;
  }
  return null;
}

/** AFK (no viewer input) applies to streaming projects that have it on. */
export function usesAfk(p: ProjectSettings): boolean {
  return p.kind === 'stream' && p.afkEnabled;
}

/** The idle timeout (no activity at all) applies to agent projects. */
export function usesIdle(p: ProjectSettings): boolean {
  return p.kind === 'agent';
}

/**
 * The deadline that activity keeps away in an active session: the AFK warning (viewer input only) for
 * streaming projects with AFK on, the idle timeout (any activity) for agent projects, or none.
 */
export function activityTimer(
  p: ProjectSettings,
): { timer: typeof TimerKind.AfkWarning | typeof TimerKind.Idle; spanMs: number; inputOnly: boolean } | null {
  if (usesAfk(p)) return { timer: TimerKind.AfkWarning, spanMs: p.timeouts.afkWarningMs, inputOnly: true };
  if (usesIdle(p)) return { timer: TimerKind.Idle, spanMs: p.timeouts.idleMs, inputOnly: false };
  return null;
}

/** Streaming sessions go active only once the viewer is connected; agent sessions when the agent starts. */
export function needsViewerToStart(p: ProjectSettings): boolean {
  return p.kind === 'stream';
}

/** Expected wait for a queue position, from the mean session duration and the pool size. */
export function estimateWaitMs(
  position: number,
  meanDurationMs: number | null,
  poolMax: number,
): number | null {
  if (meanDurationMs === null || poolMax <= 0) return null;
  return Math.round((position * meanDurationMs) / poolMax);
}
