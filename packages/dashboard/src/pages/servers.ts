// Servers: the Usher servers that share the database, as each one's row in it says (they refresh it every
// 5 s, so the list is read again as often).
import type { Server } from '../api.ts';
import { fill, h, table } from '../dom.ts';
import { badge, time } from '../format.ts';
import { header, liveRefresh, type Page } from '../page.ts';

const POLL_MS = 5_000;

export const serversPage: Page = (el, ctx) => {
  const head = header('Servers');
  const body = h('section', { class: 'card' });
  el.append(
    head.el,
    h('p', { class: 'muted' }, 'Servers that share one database share its sessions, queues and workers.'),
    body,
  );
  const refresher = liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const { servers } = await ctx.api.get<{ servers: Server[] }>('/servers');
      fill(
        body,
        table(
          ['Server', 'URL', 'Version', 'State', 'Started', 'Last seen'],
          servers.map((s) =>
            h(
              'tr',
              { 'data-server': s.id },
              h('td', null, s.id, s.self ? [' ', badge('this one', 'self')] : null),
              h('td', null, h('code', null, s.url)),
              h('td', null, s.version),
              h('td', null, !s.alive ? badge('gone') : s.draining ? badge('draining') : badge('alive')),
              h('td', null, time(s.startedAt)),
              h('td', null, time(s.seenAt)),
            ),
          ),
          'No servers recorded.',
        ),
      );
    },
    () => false,
  );
  const timer = setInterval(refresher.refresh, POLL_MS);
  return () => {
    clearInterval(timer);
    refresher();
  };
};
