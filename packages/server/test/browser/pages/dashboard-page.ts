// The operator dashboard (served by the server at /dashboard/) as a test drives it: sign in, click through the
// left nav, and wait on what the page shows. Screenshots are full pages, beside the other browser tests'.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { newPage, waitInPage } from '../chromium.ts';

const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const BUNDLE = `${ROOT}packages/dashboard/dist/dashboard.js`;
/** what the dashboard is built from: its code, its page and style sheet, and the protocol package */
const SOURCES = [
  `${ROOT}packages/dashboard/src/`,
  `${ROOT}packages/dashboard/src/pages/`,
  `${ROOT}packages/dashboard/static/`,
  `${ROOT}packages/protocol/src/`,
];
const SCREENSHOTS = fileURLToPath(new URL('../screenshots/', import.meta.url));

/** Builds packages/dashboard/dist when it is missing or older than its sources (`npm install` builds it). */
export function ensureDashboardBuilt(): void {
  if (existsSync(BUNDLE)) {
    const built = statSync(BUNDLE).mtimeMs;
    const sources = SOURCES.flatMap((dir) =>
      readdirSync(dir)
        .filter((f) => /\.(ts|html|css)$/.test(f) && !f.endsWith('.test.ts'))
        .map((f) => `${dir}${f}`),
    );
    if (sources.every((f) => statSync(f).mtimeMs <= built)) return;
  }
  execFileSync('npm', ['run', 'build', '-w', 'packages/dashboard'], { cwd: ROOT, stdio: 'inherit' });
}

export interface OpenOptions {
  /** count the page's observers that are observing (see `observers()`) */
  countObservers?: boolean;
}

/** The dashboard's observers that observe and have not been disconnected, by kind (see `countObservers`). */
export interface ObserverCounts {
  resize: number;
  mutation: number;
}

export class DashboardPage {
  readonly page: Page;
  /** the URL of every WebSocket the page opened, in order */
  readonly socketUrls: string[] = [];
  /** every call the page made to the API: method, path and query, e.g. `GET /stats?hours=24` */
  readonly calls: string[] = [];
  readonly #console: string[];

  private constructor(page: Page, console: string[]) {
    this.page = page;
    this.#console = console;
    page.on('websocket', (ws) => this.socketUrls.push(ws.url()));
    page.on('request', (r) => {
      if (r.resourceType() !== 'fetch') return;
      const url = new URL(r.url());
      this.calls.push(`${r.method()} ${url.pathname}${url.search}`);
    });
  }

  /** Opens /dashboard/ in a fresh browser context, laptop-sized. */
  static async open(
    browser: Browser,
    serverUrl: string,
    { countObservers = false }: OpenOptions = {},
  ): Promise<DashboardPage> {
    const { page, console } = await newPage(browser);
    await page.setViewportSize({ width: 1440, height: 900 });
    // before the page's scripts: every ResizeObserver and MutationObserver that the dashboard's code (not
    // Playwright's) sets up is counted from observe() until disconnect(); a chart never destroyed keeps its own
    if (countObservers)
      await page.addInitScript(() => {
        const active = { resize: new Set<object>(), mutation: new Set<object>() };
        const w = window as unknown as Record<string, unknown>;
        for (const [name, set] of [
          ['ResizeObserver', active.resize],
          ['MutationObserver', active.mutation],
        ] as const) {
          const Native = w[name] as new (cb: never) => { observe(...a: unknown[]): void; disconnect(): void };
          w[name] = class extends Native {
            override observe(...a: unknown[]): void {
              if (new Error().stack?.includes('/dashboard/dashboard.js')) set.add(this);
              super.observe(...a);
            }
            override disconnect(): void {
              set.delete(this);
              super.disconnect();
            }
          };
        }
        w.dashboardTestObservers = () => ({ resize: active.resize.size, mutation: active.mutation.size });
      });
    const d = new DashboardPage(page, console);
    await page.goto(`${serverUrl}/dashboard/`);
    return d;
  }

  /** Opens the dashboard and signs in with the key; resolves once the event stream is live. */
  static async signedIn(
    browser: Browser,
    serverUrl: string,
    key: string,
    options: OpenOptions = {},
  ): Promise<DashboardPage> {
    const d = await DashboardPage.open(browser, serverUrl, options);
    await d.signIn(key);
    await d.live();
    return d;
  }

  /** The URL of the first WebSocket the page opened to `pathname`, once it has opened one. */
  async socketTo(pathname: string): Promise<URL> {
    const match = (url: string) => new URL(url).pathname === pathname;
    const seen = this.socketUrls.find(match);
    if (seen) return new URL(seen);
    const ws = await this.page.waitForEvent('websocket', { predicate: (w) => match(w.url()) });
    return new URL(ws.url());
  }

  /** The observers observing now (the page must have been opened with `countObservers`). */
  observers(): Promise<ObserverCounts> {
    return this.page.evaluate(() =>
      (window as unknown as { dashboardTestObservers: () => ObserverCounts }).dashboardTestObservers(),
    );
  }

  /** Types the key into the sign-in form and submits it. */
  async signIn(key: string): Promise<void> {
    await this.page.locator('form.signin input[name="key"]').fill(key);
    await this.page.locator('form.signin button[type="submit"]').click();
  }

  /** The sign-in form's message, once it shows one. */
  signInMessage(): Promise<string> {
    return this.#wait('the sign-in form to show a message', () => {
      const e = document.querySelector<HTMLElement>('form.signin .error');
      return e && !e.hidden ? e.textContent : null;
    });
  }

  /** Waits for the nav's indicator to say that the event stream is connected. */
  async live(): Promise<void> {
    await this.#wait('the event stream to be live', () =>
      document.querySelector('.live-status[data-status="live"]'),
    );
  }

  /** Starts recording the changes of the nav's live indicator; `liveStatuses()` reads them. */
  async recordLiveStatus(): Promise<void> {
    await this.page.evaluate(() => {
      const el = document.querySelector('.live-status')!;
      const seen: string[] = [];
      (window as unknown as { liveStatuses: string[] }).liveStatuses = seen;
      new MutationObserver(() => seen.push(el.getAttribute('data-status') ?? '')).observe(el, {
        attributes: true,
        attributeFilter: ['data-status'],
      });
    });
  }

  liveStatuses(): Promise<string[]> {
    return this.page.evaluate(() => (window as unknown as { liveStatuses: string[] }).liveStatuses);
  }

  /** Clicks an entry of the left nav, as an operator would, and waits for the page's heading. */
  async nav(label: string): Promise<void> {
    await this.page.locator('nav.sidebar a', { hasText: label }).click();
    await this.heading(label);
  }

  /** Waits for the page's heading to be `text`. */
  async heading(text: string): Promise<void> {
    await this.#wait(
      `the heading "${text}"`,
      (t) => document.querySelector('main h1')?.textContent === t,
      text,
    );
  }

  /**
   * Waits for a shown element matching `selector` whose text contains `text` (any, when omitted); returns its
   * text. A table row's text is its cells' texts joined by tabs.
   */
  async shows(selector: string, text = ''): Promise<string> {
    const [shown] = await this.#wait(
      `${selector} showing "${text}"`,
      ([sel, t]) => {
        const textOf = (e: Element) =>
          e.tagName === 'TR'
            ? Array.from(e.children)
                .map((c) => c.textContent)
                .join('\t')
            : (e.textContent ?? '');
        const found = Array.from(document.querySelectorAll(sel))
          .filter((e) => e.checkVisibility())
          .map(textOf)
          .find((s) => s.includes(t));
        // wrapped: an element without text is found too
        return found === undefined ? null : [found];
      },
      [selector, text] as const,
    );
    return shown!;
  }

  /** Waits until no element matches `selector`. */
  async gone(selector: string): Promise<void> {
    await this.#wait(`${selector} to be gone`, (sel) => document.querySelector(sel) === null, selector);
  }

  /** The texts of the elements matching `selector`, now. */
  texts(selector: string): Promise<string[]> {
    return this.page.locator(selector).allTextContents();
  }

  /** Marks the page; `reloaded()` says whether it was loaded again since (a reload clears the mark). */
  async mark(): Promise<void> {
    await this.page.evaluate(() => {
      (window as unknown as { dashboardTestMark: boolean }).dashboardTestMark = true;
    });
  }

  reloaded(): Promise<boolean> {
    return this.page.evaluate(
      () => !(window as unknown as { dashboardTestMark?: boolean }).dashboardTestMark,
    );
  }

  /**
   * A PNG of the whole page, from its top, as screenshots/<name>.png (git-ignored); `fullPage: false` takes
   * what the window shows (a modal dialog covers only that).
   */
  async screenshot(name: string, { fullPage = true } = {}): Promise<void> {
    mkdirSync(SCREENSHOTS, { recursive: true });
    if (fullPage) await this.page.evaluate(() => window.scrollTo(0, 0));
    await this.page.screenshot({ path: `${SCREENSHOTS}${name}.png`, fullPage });
  }

  close(): Promise<void> {
    return this.page.context().close();
  }

  #wait<A, R>(what: string, predicate: (arg: A) => R, arg?: A): Promise<NonNullable<R>> {
    return waitInPage(this.page, what, predicate, arg as A, {
      seen: () => [
        `hash ${location.hash}`,
        ...Array.from(document.querySelectorAll<HTMLElement>('.error:not([hidden])')).map(
          (e) => `error: ${e.textContent}`,
        ),
        (document.querySelector('main') ?? document.body).textContent.slice(0, 1500),
      ],
      console: this.#console,
    });
  }
}
