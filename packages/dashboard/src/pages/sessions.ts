// Sessions: the live ones by state (or the last ended ones), filtered by project; each links to its page.
import type { Session } from '../api.ts';
import { LIVE_STATES } from '../charts.ts';
import { fill, h, table } from '../dom.ts';
import { badge, closeCode, duration, link, time } from '../format.ts';
import { header, liveRefresh, type Page, projectFilter } from '../page.ts';

const STATE_ORDER = [...LIVE_STATES, 'ended'] as string[];

export const sessionsPage: Page = (el, ctx) => {
  const projectId = ctx.query.get('project') ?? '';
  const state = ctx.query.get('state') ?? '';
  const go = (changes: Record<string, string>) => {
    const wanted = { project: projectId, state, ...changes };
    const q = new URLSearchParams(Object.entries(wanted).filter(([, v]) => v));
    location.hash = `#/sessions${q.size ? `?${q}` : ''}`;
  };
  const head = header('Sessions');
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Session states', 'data-project': projectId });
  const body = h('section', { class: 'card' });
  el.append(head.el, tabs, body);
  projectFilter(ctx, projectId, (p) => go({ project: p }))
    .then((f) => head.el.querySelector('.actions')!.append(f))
    .catch(() => {});

  const stop = liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const scope = projectId ? `&projectId=${encodeURIComponent(projectId)}` : '';
      const live = (
        await ctx.api.get<{ sessions: Session[] }>(
          `/sessions?state=${LIVE_STATES.join(',')}&limit=1000${scope}`,
        )
      ).sessions;
      const shown =
        state === 'ended'
          ? (await ctx.api.get<{ sessions: Session[] }>(`/sessions?state=ended&limit=100${scope}`)).sessions
          : live.filter((s) => !state || s.state === state);
      const count = (s: string) => live.filter((x) => x.state === s).length;
      const tab = (value: string, label: string) =>
        h(
          'a',
          {
            href: '#',
            class: value === state ? 'tab active' : 'tab',
            'data-state': value || 'live',
            onclick: (e) => {
              e.preventDefault();
              go({ state: value });
            },
          },
          label,
        );
      fill(
        tabs,
        tab('', `All live (${live.length})`),
        LIVE_STATES.map((s) => tab(s, `${s} (${count(s)})`)),
        tab('ended', 'ended (last 100)'),
      );
      shown.sort(
        (a, b) =>
          STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) ||
          b.createdAt.localeCompare(a.createdAt),
      );
      fill(
        body,
        table(
          ['Session', 'Project', 'Region', 'State', 'Worker', 'Queue', 'Created', 'Updated', 'Close code'],
          shown.map((s) =>
            h(
              'tr',
              { 'data-session': s.id, 'data-state': s.state },
              h('td', null, link(`/sessions/${encodeURIComponent(s.id)}`, s.id)),
              h('td', null, link(`/projects/${encodeURIComponent(s.projectId)}`, s.projectId)),
              h('td', null, s.region),
              h('td', null, badge(s.state)),
              h('td', null, s.workerId ?? '–'),
              h(
                'td',
                null,
                s.queuePosition === null
                  ? '–'
                  : `#${s.queuePosition}${s.estimatedWaitMs === null ? '' : ` · ~${duration(s.estimatedWaitMs)}`}`,
              ),
              h('td', null, time(s.createdAt)),
              h('td', null, time(s.updatedAt)),
              h('td', null, closeCode(s.endCode, s.endReason)),
            ),
          ),
          state === 'ended' ? 'No ended sessions.' : 'No live sessions.',
        ),
      );
    },
    (e) =>
      (e.type === 'session.status_changed' || e.type === 'session.queue_position') &&
      (!projectId || e.projectId === projectId),
  );
  return stop;
};
