// Sessions: the live ones by state (or the last ended ones), filtered by project; each links to its page. The
// counts are the server's; the list is the newest `limit` (100 unless the URL says otherwise, up to 1000).
import { liveCounts, type Session } from '../api.ts';
import { LIVE_STATES } from '../charts.ts';
import { fill, h, table } from '../dom.ts';
import { badge, closeCode, duration, link, time } from '../format.ts';
import { header, liveRefresh, type Page, projectFilter } from '../page.ts';

const STATE_ORDER = [...LIVE_STATES, 'ended'] as string[];
const DEFAULT_LIMIT = 100;
/** the most GET /sessions lists at once */
const MAX_LIMIT = 1000;

export const sessionsPage: Page = (el, ctx) => {
  const projectId = ctx.query.get('project') ?? '';
  const state = ctx.query.get('state') ?? '';
  const asked = Number(ctx.query.get('limit'));
  const limit = Number.isInteger(asked) && asked >= 1 && asked <= MAX_LIMIT ? asked : DEFAULT_LIMIT;
  const go = (changes: Record<string, string>) => {
    const wanted = {
      project: projectId,
      state,
      limit: limit === DEFAULT_LIMIT ? '' : String(limit),
      ...changes,
    };
    const q = new URLSearchParams(Object.entries(wanted).filter(([, v]) => v));
    location.hash = `#/sessions${q.size ? `?${q}` : ''}`;
  };
  const head = header('Sessions');
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Session states', 'data-project': projectId });
  const cut = h('p', { class: 'muted list-cut', hidden: true });
  const body = h('section', { class: 'card' });
  el.append(head.el, tabs, cut, body);
  projectFilter(ctx, projectId, (p) => go({ project: p }))
    .then((f) => head.el.querySelector('.actions')!.append(f))
    .catch(() => {});

  const stop = liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const scope = projectId ? `&projectId=${encodeURIComponent(projectId)}` : '';
      const states = state === 'ended' ? 'ended' : state || LIVE_STATES.join(',');
      // one more than shown says whether the list was cut (below the API's maximum)
      const [counts, { sessions }] = await Promise.all([
        liveCounts(ctx.api, projectId),
        ctx.api.get<{ sessions: Session[] }>(
          `/sessions?state=${states}&limit=${Math.min(limit + 1, MAX_LIMIT)}${scope}`,
        ),
      ]);
      const count = (s: string) => counts[s] ?? 0;
      const allLive = LIVE_STATES.reduce((n, s) => n + count(s), 0);
      const shown = sessions.slice(0, limit);
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
        tab('', `All live (${allLive})`),
        LIVE_STATES.map((s) => tab(s, `${s} (${count(s)})`)),
        tab('ended', 'ended'),
      );
      const total = state === 'ended' ? null : state ? count(state) : allLive;
      const more = limit < MAX_LIMIT ? Math.min(MAX_LIMIT, limit * 10) : null;
      fill(
        cut,
        `Showing the newest ${limit}${total !== null && total > limit ? ` of ${total}` : ''}${state === 'ended' ? ' ended' : ''} sessions. `,
        more === null
          ? null
          : h(
              'a',
              {
                href: '#',
                class: 'more',
                onclick: (e) => {
                  e.preventDefault();
                  go({ limit: String(more) });
                },
              },
              `Show ${more}`,
            ),
      );
      cut.hidden = !(
        sessions.length > limit ||
        (sessions.length === MAX_LIMIT && (total === null || total > MAX_LIMIT))
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
