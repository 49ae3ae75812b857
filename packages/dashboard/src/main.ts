// The dashboard's entry: sign-in with an admin key (kept in sessionStorage), then the shell (left nav, live
// status) and hash routing: every page has a URL such as #/sessions/<id>.
import { Api, request } from './api.ts';
import { fill, h } from './dom.ts';
import { type FeedEvent, LiveSocket } from './live.ts';
import type { Page, PageContext } from './page.ts';
import { overviewPage } from './pages/overview.ts';
import { projectPage } from './pages/project.ts';
import { projectsPage } from './pages/projects.ts';
import { queuesPage } from './pages/queues.ts';
import { serversPage } from './pages/servers.ts';
import { sessionPage } from './pages/session.ts';
import { sessionsPage } from './pages/sessions.ts';
import { workersPage } from './pages/workers.ts';

const KEY_STORAGE = 'usher.adminKey';

const NAV = [
  ['/', 'Overview'],
  ['/projects', 'Projects'],
  ['/sessions', 'Sessions'],
  ['/queues', 'Queues'],
  ['/workers', 'Workers'],
  ['/servers', 'Servers'],
] as const;

/** Route patterns, most specific first; the captured groups become ctx.params. */
const ROUTES: [RegExp, Page][] = [
  [/^\/$/, overviewPage],
  [/^\/projects$/, projectsPage],
  [/^\/projects\/([^/]+)$/, projectPage],
  [/^\/sessions$/, sessionsPage],
  [/^\/sessions\/([^/]+)$/, sessionPage],
  [/^\/queues$/, queuesPage],
  [/^\/workers$/, workersPage],
  [/^\/servers$/, serversPage],
];

const root = document.getElementById('app')!;

function signIn(message = ''): void {
  const input = h('input', {
    type: 'password',
    name: 'key',
    autocomplete: 'off',
    required: true,
    placeholder: 'usk_…',
  });
  const error = h('p', { class: 'error', role: 'alert', hidden: !message }, message);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin' },
    h('h1', null, 'Usher'),
    h('p', { class: 'muted' }, 'Operator dashboard. Sign in with an admin API key.'),
    h('label', { class: 'signin-field' }, 'Admin key', input),
    error,
    button,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    try {
      const r = await request(key, 'GET', '/projects');
      if (r.error) {
        error.textContent =
          r.status === 401 || r.status === 403
            ? `That key was refused: ${r.error.message}`
            : `The server answered ${r.status}: ${r.error.message}`;
        error.hidden = false;
        return;
      }
      sessionStorage.setItem(KEY_STORAGE, key);
      start(key);
    } catch (err) {
      error.textContent = `Could not reach the server: ${(err as Error).message}`;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  fill(root, h('div', { class: 'signin-screen' }, form));
  input.focus();
}

function start(key: string): void {
  const live = new LiveSocket<FeedEvent>('/events/ws', key);
  let leave: (() => void) | undefined;
  let signedOut = false;
  const signOut = (message: string) => {
    if (signedOut) return;
    signedOut = true;
    sessionStorage.removeItem(KEY_STORAGE);
    window.removeEventListener('hashchange', route);
    leave?.();
    live.close();
    signIn(message);
  };
  const api = new Api(key, (message) => signOut(`Your admin key was refused (${message}). Sign in again.`));

  const status = h('span', { class: 'live-status' });
  live.onStatus((s) => {
    status.dataset.status = s;
    status.textContent = {
      connecting: 'Connecting…',
      live: 'Live',
      reconnecting: 'Reconnecting…',
      closed: '',
    }[s];
  });
  const links = NAV.map(([path, label]) => h('a', { href: `#${path}`, 'data-path': path }, label));
  const main = h('main', { id: 'page' });
  const nav = h(
    'nav',
    { class: 'sidebar' },
    h('div', { class: 'brand' }, 'Usher'),
    links,
    h(
      'div',
      { class: 'sidebar-foot' },
      status,
      h('button', { type: 'button', class: 'link', onclick: () => signOut('Signed out.') }, 'Sign out'),
    ),
  );
  fill(root, h('div', { class: 'shell' }, nav, main));

  function route(): void {
    leave?.();
    leave = undefined;
    const [path = '/', search = ''] = (location.hash.slice(1) || '/').split('?');
    for (const a of links) {
      const p = a.dataset.path!;
      a.classList.toggle('active', p === '/' ? path === '/' : path === p || path.startsWith(`${p}/`));
    }
    for (const [pattern, page] of ROUTES) {
      const m = pattern.exec(path);
      if (!m) continue;
      const ctx: PageContext = {
        api,
        live,
        params: m.slice(1).map(decodeURIComponent),
        query: new URLSearchParams(search),
      };
      main.replaceChildren();
      leave = page(main, ctx);
      return;
    }
    fill(
      main,
      h('h1', null, 'Not found'),
      h('p', null, 'No page at ', h('code', null, path), '. ', h('a', { href: '#/' }, 'Overview')),
    );
  }
  window.addEventListener('hashchange', route);
  live.start();
  route();
}

const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved) start(saved);
else signIn();
