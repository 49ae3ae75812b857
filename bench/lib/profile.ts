// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, largest first.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  fn: string;
  where: string;
  selfMs: number;
  share: number;
}

/**
 * Self time by function over the samples taken between fromUs and toUs, on the monotonic clock that both
 * V8's profiler and process.hrtime read (µs); idle and GC appear under V8's names "(idle)" and
 * "(garbage collector)". Returns the rows and the total sampled time in the window.
 */
export function topSelfTime(
  file: string,
  limit = 20,
  window?: { fromUs: number; toUs: number },
): { rows: SelfTime[]; totalMs: number } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, { fn: string; where: string; us: number }>();
  let t = p.startTime;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (window && (t < window.fromUs || t > window.toUs)) continue;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    const cf = node.callFrame;
    const url = cf.url.startsWith('file://') ? relative(process.cwd(), new URL(cf.url).pathname) : cf.url;
    const where = url ? `${url}:${cf.lineNumber + 1}` : '';
    const fn = cf.functionName || '(anonymous)';
    const key = `${fn}\u0000${where}`;
    const entry = totals.get(key) ?? { fn, where, us: 0 };
    entry.us += dt;
    totals.set(key, entry);
    total += dt;
  }
  const rows = [...totals.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((e) => ({
      fn: e.fn,
      where: e.where,
      selfMs: Math.round(e.us / 1000),
      share: Math.round((e.us / Math.max(1, total)) * 1000) / 10,
    }));
  return { rows, totalMs: Math.round(total / 1000) };
}

/** Summarises a server CPU profile over a window, logs it, and returns its lines (empty without a profile). */
export function logProfile(
  file: string | null | undefined,
  limit: number,
  window: { fromUs: number; toUs: number },
  label: string,
  log: (line: string) => void,
): string[] {
  if (!file) return [];
  const top = topSelfTime(file, limit, window);
  const lines = top.rows.map((r) => `${r.share}% ${r.selfMs} ms ${r.fn} ${r.where}`);
  log(
    `server CPU profile (${label}, ${top.totalMs} ms sampled, µs ${window.fromUs}–${window.toUs}): ${file}`,
  );
  for (const line of lines) log(`  ${line}`);
  return lines;
}
