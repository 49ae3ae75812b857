// Workers: each live worker's state and session; drain one (no new sessions; it stops after its session).
import type { Worker } from '../api.ts';
import { confirmDialog } from '../confirm.ts';
import { fill, h, table } from '../dom.ts';
import { badge, link, time } from '../format.ts';
import { header, liveRefresh, type Page, projectFilter, showError } from '../page.ts';

export const workersPage: Page = (el, ctx) => {
  const projectId = ctx.query.get('project') ?? '';
  const head = header('Workers');
  const body = h('section', { class: 'card' });
  el.append(head.el, body);
  projectFilter(ctx, projectId, (p) => {
    location.hash = p ? `#/workers?project=${encodeURIComponent(p)}` : '#/workers';
  })
    .then((f) => head.el.querySelector('.actions')!.append(f))
    .catch(() => {});

  const drain = async (w: Worker) => {
    const ok = await confirmDialog({
      title: `Drain worker ${w.id}?`,
      body: w.sessionId
        ? 'It takes no new session and stops once its current session ends.'
        : 'It takes no new session and stops now.',
      confirm: 'Drain worker',
      danger: true,
    });
    if (!ok) return;
    await ctx.api
      .post<Worker>(`/workers/${encodeURIComponent(w.id)}/drain`)
      .then(() => refresher.refresh())
      .catch((err) => showError(head.error, err));
  };

  const refresher = liveRefresh(
    ctx.live,
    head.error,
    async () => {
      const scope = projectId ? `?projectId=${encodeURIComponent(projectId)}` : '';
      const { workers } = await ctx.api.get<{ workers: Worker[] }>(`/workers${scope}`);
      workers.sort(
        (a, b) => a.projectId.localeCompare(b.projectId) || a.createdAt.localeCompare(b.createdAt),
      );
      fill(
        body,
        table(
          ['Worker', 'Project', 'Region', 'Driver', 'State', 'Session', 'Created', 'Ready since', ''],
          workers.map((w) =>
            h(
              'tr',
              { 'data-worker': w.id, 'data-state': w.state },
              h('td', null, w.id),
              h('td', null, link(`/projects/${encodeURIComponent(w.projectId)}`, w.projectId)),
              h('td', null, w.region),
              h('td', null, w.driver),
              h(
                'td',
                null,
                badge(w.state, `worker-${w.state}`),
                w.draining ? [' ', badge('draining')] : null,
              ),
              h(
                'td',
                null,
                w.sessionId ? link(`/sessions/${encodeURIComponent(w.sessionId)}`, w.sessionId) : '–',
              ),
              h('td', null, time(w.createdAt)),
              h('td', null, time(w.readyAt)),
              h(
                'td',
                { class: 'row-actions' },
                w.draining || w.state === 'stopping' || w.state === 'stopped'
                  ? null
                  : h('button', { type: 'button', onclick: () => void drain(w) }, 'Drain'),
              ),
            ),
          ),
          'No live workers.',
        ),
      );
    },
    (e) => e.type === 'worker.changed' && (!projectId || e.worker.projectId === projectId),
  );
  return refresher;
};
