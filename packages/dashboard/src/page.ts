// What every page gets, and the live-refresh loop most pages share.
import type { Api } from './api.ts';
import { h, throttle } from './dom.ts';
import type { EventSource, FeedEvent, LiveSocket } from './live.ts';

export interface PageContext {
  api: Api;
  /** the server's event feed */
  live: LiveSocket<FeedEvent>;
  /** the route's captured parts, e.g. the session id of #/sessions/<id> */
  params: string[];
  /** the route's query, e.g. #/sessions?project=demo&state=queued */
  query: URLSearchParams;
}

/** Renders into `el`; returns what to do when the operator leaves the page. */
export type Page = (el: HTMLElement, ctx: PageContext) => (() => void) | undefined;

/** The page's heading and an area for errors. */
export function header(title: string, ...actions: Node[]): { el: HTMLElement; error: HTMLElement } {
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const el = h(
    'header',
    { class: 'page-header' },
    h('h1', null, title),
    h('div', { class: 'actions' }, actions),
  );
  return { el: h('div', null, el, error), error };
}

export function showError(el: HTMLElement, err: unknown): void {
  el.textContent = err instanceof Error ? err.message : String(err);
  el.hidden = false;
}

/**
 * Runs `refresh` now, then again (at most every `ms`) on each event of `source` that `wants` accepts, and on
 * the feed's `hello` (after each reconnection, when events may have been missed). Refreshes never overlap; a
 * failure shows in `error`. Returns the stop, which also has `refresh()` for a refresh on demand (after an
 * action of the operator).
 */
export function liveRefresh<E extends { type: string }>(
  source: EventSource<E>,
  error: HTMLElement,
  refresh: () => Promise<void>,
  wants: (e: E) => boolean,
  ms = 300,
): (() => void) & { refresh(): void } {
  let running = false;
  let again = false;
  let stopped = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await refresh();
      if (!stopped) error.hidden = true;
    } catch (err) {
      if (!stopped) showError(error, err);
    } finally {
      running = false;
      if (again && !stopped) {
        again = false;
        void run();
      }
    }
  };
  const soon = throttle(() => void run(), ms);
  void run();
  const off = source.on((e) => {
    if (e.type === 'hello' || wants(e)) soon();
  });
  const stop = () => {
    stopped = true;
    soon.cancel();
    off();
  };
  return Object.assign(stop, { refresh: soon });
}

/** Project ids for a filter <select>, "All projects" first; calls onChange with '' or the id. */
export async function projectFilter(
  ctx: PageContext,
  selected: string,
  onChange: (projectId: string) => void,
): Promise<HTMLLabelElement> {
  const { projects } = await ctx.api.get<{ projects: { id: string; name: string }[] }>('/projects');
  const select = h(
    'select',
    { name: 'project', onchange: (e) => onChange((e.target as HTMLSelectElement).value) },
    h('option', { value: '' }, 'All projects'),
    projects.map((p) => h('option', { value: p.id, selected: p.id === selected }, p.id)),
  );
  return h('label', { class: 'filter' }, 'Project ', select);
}
