// Overview: how many sessions are in each state now (counted by the server), and the last day in three charts.
import { liveCounts, type Stats } from '../api.ts';
import { destroyChart, drawChart, LIVE_STATES } from '../charts.ts';
import { fill, h } from '../dom.ts';
import { header, liveRefresh, type Page } from '../page.ts';

const HOURS = 24;

export const overviewPage: Page = (el, ctx) => {
  const head = header('Overview');
  const counts = h('section', { class: 'cards', 'aria-label': 'Sessions by state' });
  const chart = (kind: 'states' | 'queue' | 'closeCodes', title: string) => {
    const canvas = h('canvas', { 'data-chart': kind });
    const note = h('p', { class: 'muted chart-note', hidden: true });
    const box = h('div', { class: 'chart-box' }, canvas);
    return {
      kind,
      canvas,
      note,
      card: h('section', { class: 'card chart' }, h('h2', null, title), box, note),
    };
  };
  const charts = [
    chart('states', 'Sessions by state, last 24 h'),
    chart('queue', 'Queue length and wait times, last 24 h'),
    chart('closeCodes', 'Close codes, last 24 h'),
  ];
  const chartError = h('p', { class: 'error', role: 'alert', hidden: true });
  el.append(
    head.el,
    counts,
    chartError,
    h(
      'div',
      { class: 'charts' },
      charts.map((c) => c.card),
    ),
  );

  let endedToday: number | null = null;
  /** set once the operator has left: a read still on its way draws nothing */
  let left = false;
  const stopCounts = liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const by = await liveCounts(ctx.api);
      if (left) return;
      fill(
        counts,
        LIVE_STATES.map((state) =>
          h(
            'a',
            { class: `card count state-${state}`, href: `#/sessions?state=${state}`, 'data-state': state },
            h('span', { class: 'count-value' }, String(by[state] ?? 0)),
            h('span', { class: 'count-label' }, state),
          ),
        ),
        h(
          'a',
          { class: 'card count state-ended', href: '#/sessions?state=ended', 'data-state': 'ended' },
          h('span', { class: 'count-value' }, endedToday === null ? '–' : String(endedToday)),
          h('span', { class: 'count-label' }, `ended, last ${HOURS} h`),
        ),
      );
    },
    (e) => e.type === 'session.status_changed',
  );

  // the charts cover a day in buckets: they follow the events too, but at a calmer pace
  const stopCharts = liveRefresh(
    ctx.live,
    chartError,
    async () => {
      const stats = await ctx.api.get<Stats>(`/stats?hours=${HOURS}`);
      // a chart drawn on a page that is gone would never be destroyed
      if (left) return;
      endedToday = stats.series.reduce((n, p) => n + p.ended, 0);
      const card = counts.querySelector('[data-state="ended"] .count-value');
      if (card) card.textContent = String(endedToday);
      for (const c of charts) drawChart(c.canvas, c.kind, stats);
      const codes = charts[2]!;
      codes.note.textContent = `No session ended in the last ${HOURS} hours.`;
      codes.note.hidden = stats.closeCodes.length > 0;
    },
    (e) => e.type === 'session.status_changed',
    5_000,
  );
  return () => {
    left = true;
    stopCounts();
    stopCharts();
    for (const c of charts) destroyChart(c.canvas);
  };
};
