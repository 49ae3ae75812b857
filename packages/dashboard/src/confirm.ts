// A modal confirmation (<dialog>): resolves true when the operator confirms, false on cancel or Escape.
import { h } from './dom.ts';

export function confirmDialog(options: {
  title: string;
  body: string;
  confirm: string;
  danger?: boolean;
}): Promise<boolean> {
  const dialog = h(
    'dialog',
    { class: 'confirm' },
    h(
      'form',
      { method: 'dialog' },
      h('h2', null, options.title),
      h('p', null, options.body),
      h(
        'div',
        { class: 'dialog-actions' },
        h('button', { value: 'cancel', type: 'submit' }, 'Cancel'),
        h(
          'button',
          { value: 'confirm', type: 'submit', class: options.danger ? 'danger' : 'primary' },
          options.confirm,
        ),
      ),
    ),
  );
  document.body.append(dialog);
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
  });
}

/** Asks, then enables or disables a project; resolves with the project, or null when canceled. */
export async function setProjectEnabled<T>(
  post: (path: string) => Promise<T>,
  projectId: string,
  enabled: boolean,
): Promise<T | null> {
  const ok = await confirmDialog(
    enabled
      ? {
          title: `Enable project ${projectId}?`,
          body: 'It takes new sessions again, and its warm workers start.',
          confirm: 'Enable project',
        }
      : {
          title: `Disable project ${projectId}?`,
          body: 'Its live and queued sessions end now with close code 4000 (project disabled), and new sessions are refused until it is enabled again.',
          confirm: 'Disable project',
          danger: true,
        },
  );
  if (!ok) return null;
  return post(`/projects/${encodeURIComponent(projectId)}/${enabled ? 'enable' : 'disable'}`);
}
