// A project: #/projects/new creates one; #/projects/<id> edits every setting, enables or disables it.
import { ApiError, type Project } from '../api.ts';
import { setProjectEnabled } from '../confirm.ts';
import { fill, h } from '../dom.ts';
import { badge, link, time } from '../format.ts';
import { header, type Page, showError } from '../page.ts';
import { projectForm } from '../project-form.ts';

export const projectPage: Page = (el, ctx) => {
  const id = ctx.params[0]!;
  if (id === 'new') {
    const head = header('New project', link('/projects', 'All projects'));
    const form = projectForm(null, 'Create project');
    form.el.addEventListener('submit', async (e) => {
      e.preventDefault();
      const input = form.read();
      if (!input) return;
      try {
        const p = await ctx.api.post<Project>('/projects', input);
        location.hash = `#/projects/${encodeURIComponent(p.id)}?created=1`;
      } catch (err) {
        if (err instanceof ApiError) form.showError(err.message);
        else showError(head.error, err);
      }
    });
    el.append(head.el, h('section', { class: 'card' }, form.el));
    return undefined;
  }

  const head = header(`Project ${id}`);
  const notice = h('p', { class: 'notice', role: 'status', hidden: true });
  const body = h('section', { class: 'card' });
  el.append(head.el, notice, body);
  const say = (text: string) => {
    notice.textContent = text;
    notice.hidden = false;
  };
  if (ctx.query.has('created'))
    say('Project created. Every setting not shown at creation has its default: change them below.');

  const render = (p: Project) => {
    const actions = head.el.querySelector('.actions')!;
    fill(
      actions,
      p.enabled ? badge('enabled') : badge('disabled'),
      link(`/sessions?project=${encodeURIComponent(p.id)}`, 'Sessions'),
      link(`/workers?project=${encodeURIComponent(p.id)}`, 'Workers'),
      h(
        'button',
        {
          type: 'button',
          class: p.enabled ? 'danger' : 'primary',
          onclick: () =>
            void setProjectEnabled((path) => ctx.api.post<Project>(path), p.id, !p.enabled)
              .then((changed) => {
                if (!changed) return;
                render(changed);
                say(changed.enabled ? 'Project enabled.' : 'Project disabled: its sessions ended with 4000.');
              })
              .catch((err) => showError(head.error, err)),
        },
        p.enabled ? 'Disable project' : 'Enable project',
      ),
    );
    const form = projectForm(p, 'Save settings');
    form.el.addEventListener('submit', async (e) => {
      e.preventDefault();
      notice.hidden = true;
      const input = form.read();
      if (!input) return;
      try {
        const saved = await ctx.api.patch<Project>(`/projects/${encodeURIComponent(p.id)}`, input);
        render(saved);
        say(`Settings saved at ${time(saved.updatedAt)}.`);
      } catch (err) {
        if (err instanceof ApiError) form.showError(err.message);
        else showError(head.error, err);
      }
    });
    fill(
      body,
      h('p', { class: 'muted' }, `Created ${time(p.createdAt)} · updated ${time(p.updatedAt)}`),
      form.el,
    );
  };
  ctx.api
    .get<Project>(`/projects/${encodeURIComponent(id)}`)
    .then(render)
    .catch((err) => showError(head.error, err));
  return undefined;
};
