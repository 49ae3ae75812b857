// Projects: the list with each one's pools and state; create one, open one to edit, enable or disable it.
import type { Project } from '../api.ts';
import { setProjectEnabled } from '../confirm.ts';
import { fill, h, table } from '../dom.ts';
import { badge, link, time } from '../format.ts';
import { header, type Page, showError } from '../page.ts';

export const projectsPage: Page = (el, ctx) => {
  const head = header('Projects', h('a', { class: 'button primary', href: '#/projects/new' }, 'New project'));
  const body = h('section', { class: 'card' });
  el.append(head.el, body);

  const load = async () => {
    const { projects } = await ctx.api.get<{ projects: Project[] }>('/projects');
    fill(
      body,
      table(
        ['Project', 'Name', 'Kind', 'State', 'Regions (warm / max workers)', 'Queue limit', 'Updated', ''],
        projects.map((p) =>
          h(
            'tr',
            { 'data-project': p.id },
            h('td', null, link(`/projects/${encodeURIComponent(p.id)}`, p.id)),
            h('td', null, p.name),
            h('td', null, p.kind),
            h('td', null, p.enabled ? badge('enabled') : badge('disabled')),
            h(
              'td',
              null,
              Object.entries(p.regions)
                .map(([r, pool]) => `${r}: ${pool.min} / ${pool.max}`)
                .join(', '),
            ),
            h('td', null, String(p.maxQueueLength)),
            h('td', null, time(p.updatedAt)),
            h(
              'td',
              { class: 'row-actions' },
              h(
                'button',
                {
                  type: 'button',
                  class: p.enabled ? 'danger' : '',
                  onclick: () =>
                    void setProjectEnabled((path) => ctx.api.post<Project>(path), p.id, !p.enabled)
                      .then((changed) => changed && load())
                      .catch((err) => showError(head.error, err)),
                },
                p.enabled ? 'Disable' : 'Enable',
              ),
            ),
          ),
        ),
        'No projects yet: create one.',
      ),
    );
  };
  load().catch((err) => showError(head.error, err));
  return undefined;
};
