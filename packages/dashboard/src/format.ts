// How the dashboard shows times, durations, states and close codes.
import { CLOSE_CODES, type CloseCode, END_REASONS, type EndReason, isCloseCode } from '@usher/protocol';
import { h } from './dom.ts';

/** "2026-01-01 12:00:05" in the browser's time zone; "–" for none. */
export function time(iso: string | null | undefined): string {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "12:00" (for chart axes). */
export function clock(iso: string | number): string {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** "45 s", "3 min 20 s", "2 h 5 min"; "–" for none. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${Math.floor(m / 60)} h`;
}

/** A coloured badge; the colour comes from `badge-<kind>` in dashboard.css (states, and a few words). */
export function badge(text: string, kind = text): HTMLSpanElement {
  return h('span', { class: `badge badge-${kind}` }, text);
}

/** "4000 project_disabled" with the code's meaning and the reason's description as a tooltip. */
export function closeCode(code: number | null, reason: string | null): HTMLSpanElement | string {
  if (code === null) return '–';
  return h(
    'span',
    { class: 'close-code', title: describeClose(code, reason) },
    `${code} ${reason ?? ''}`.trim(),
  );
}

export function describeClose(code: number, reason: string | null): string {
  const meaning = isCloseCode(code) ? CLOSE_CODES[code as CloseCode].meaning : 'unknown code';
  const why =
    reason && Object.hasOwn(END_REASONS, reason) ? END_REASONS[reason as EndReason].description : null;
  return why ? `${meaning}: ${why}` : meaning;
}

/** A link inside the dashboard (hash route). */
export function link(route: string, text: string): HTMLAnchorElement {
  return h('a', { href: `#${route}` }, text);
}
