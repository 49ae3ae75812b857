// Queues: each project's region that has sessions waiting, with their positions and estimated waits.
import type { Queue } from '../api.ts';
import { fill, h, table } from '../dom.ts';
import { duration, link, time } from '../format.ts';
import { header, liveRefresh, type Page, projectFilter } from '../page.ts';

export const queuesPage: Page = (el, ctx) => {
  const projectId = ctx.query.get('project') ?? '';
  const head = header('Queues');
  const body = h('div', { class: 'queues' });
  el.append(head.el, body);
  projectFilter(ctx, projectId, (p) => {
    location.hash = p ? `#/queues?project=${encodeURIComponent(p)}` : '#/queues';
  })
    .then((f) => head.el.querySelector('.actions')!.append(f))
    .catch(() => {});

  return liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const scope = projectId ? `?projectId=${encodeURIComponent(projectId)}` : '';
      const { queues } = await ctx.api.get<{ queues: Queue[] }>(`/queues${scope}`);
      fill(
        body,
        queues.length === 0 ? h('section', { class: 'card empty' }, 'No session is waiting.') : null,
        queues.map((q) =>
          h(
            'section',
            { class: 'card queue', 'data-queue': `${q.projectId}/${q.region}` },
            h(
              'header',
              { class: 'card-header' },
              h(
                'h2',
                null,
                link(`/projects/${encodeURIComponent(q.projectId)}`, q.projectId),
                ` · ${q.region}`,
              ),
              h(
                'span',
                { class: 'muted' },
                `${q.length} waiting · the last in line waits about ${duration(q.estimatedWaitMs)}`,
              ),
            ),
            table(
              ['Position', 'Session', 'Queued at', 'Estimated wait'],
              q.sessions.map((s) =>
                h(
                  'tr',
                  { 'data-session': s.id },
                  h('td', { class: 'position' }, String(s.position)),
                  h('td', null, link(`/sessions/${encodeURIComponent(s.id)}`, s.id)),
                  h('td', null, time(s.queuedAt)),
                  h('td', null, duration(s.estimatedWaitMs)),
                ),
              ),
              'Nobody waiting.',
            ),
          ),
        ),
      );
    },
    (e) =>
      (e.type === 'session.status_changed' || e.type === 'session.queue_position') &&
      (!projectId || e.projectId === projectId),
  );
};
