// The Web SDK test page (sdk.html) as a test drives it: served on the Usher server's own origin (the API sends
// no CORS headers), it loads the SDK the server serves at /sdk/usher.js and records the session's events in
// window.usherTest; these helpers start a session there and wait on what the page saw.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { newPage, screenshot, videoPlays, waitInPage } from '../chromium.ts';

const HTML = readFileSync(new URL('./sdk.html', import.meta.url), 'utf8');
const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const SDK_BUNDLE = `${ROOT}packages/web-sdk/dist/usher.js`;
/** what the bundle is made of: the SDK and the protocol package it imports */
const SDK_SOURCES = [`${ROOT}packages/web-sdk/src/`, `${ROOT}packages/protocol/src/`];
/** Not a route of the server: the page intercepts it and answers with sdk.html. */
const PAGE_PATH = '/browser-test/sdk.html';

/**
 * Builds packages/web-sdk/dist/usher.js (which the server serves at /sdk/usher.js) when it is missing or older
 * than the SDK's sources, so that the pages never run a stale SDK. `npm install` builds it, so this is rare.
 */
export function ensureSdkBuilt(): void {
  if (existsSync(SDK_BUNDLE)) {
    const built = statSync(SDK_BUNDLE).mtimeMs;
    const sources = SDK_SOURCES.flatMap((dir) =>
      readdirSync(dir)
        .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
        .map((f) => `${dir}${f}`),
    );
    if (sources.every((f) => statSync(f).mtimeMs <= built)) return;
  }
  execFileSync('npm', ['run', 'build', '-w', 'packages/web-sdk'], { cwd: ROOT, stdio: 'inherit' });
}

export interface PageEvent {
  name: string;
  data: Record<string, unknown> & { code?: number; reason?: string; state?: string };
}

interface TestHooks {
  states: string[];
  events: PageEvent[];
  session: {
    id: string;
    state: string;
    dataChannel: { readyState: string } | null;
    sendInput(data: string): boolean;
    markActive(): void;
    leave(): void;
  } | null;
  start(options: Record<string, unknown>): Promise<StartResult>;
}

export type StartResult =
  | { id: string; state: string }
  | { error: { code: string; status?: number; message: string } };

declare global {
  interface Window {
    usherTest: TestHooks;
  }
}

export class SdkPage {
  readonly page: Page;
  readonly #console: string[];

  private constructor(page: Page, console: string[]) {
    this.page = page;
    this.#console = console;
  }

  /** Opens the test page in a fresh browser context, on the server's origin. */
  static async open(browser: Browser, serverUrl: string): Promise<SdkPage> {
    const { page, console } = await newPage(browser);
    const p = new SdkPage(page, console);
    await page.route(`${serverUrl}${PAGE_PATH}`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: HTML }),
    );
    await page.goto(`${serverUrl}${PAGE_PATH}`);
    await p.#wait('the page to load the SDK', () => window.usherTest !== undefined);
    return p;
  }

  /** UsherSession.start in the page, on a project of this server. */
  start(projectId: string, options: Record<string, unknown> = {}): Promise<StartResult> {
    return this.page.evaluate((o) => window.usherTest.start(o), { projectId, ...options });
  }

  /** The session's id as the page sees it now. */
  sessionId(): Promise<string> {
    return this.page.evaluate(() => window.usherTest.session!.id);
  }

  states(): Promise<string[]> {
    return this.page.evaluate(() => window.usherTest.states);
  }

  events(name?: string): Promise<PageEvent[]> {
    return this.page.evaluate((n) => window.usherTest.events.filter((e) => !n || e.name === n), name);
  }

  /** Waits until the session is in state. */
  async waitForState(state: string): Promise<void> {
    await this.#wait(`state ${state}`, (s) => window.usherTest.session?.state === s, state);
  }

  /** Waits for the n-th (1-based) event of a name whose data has the given fields, and returns it. */
  waitForEvent(name: string, fields: Record<string, unknown> = {}, n = 1): Promise<PageEvent> {
    const what = `event ${name} ${JSON.stringify(fields)}${n > 1 ? ` (#${n})` : ''}`;
    return this.#wait(
      what,
      (a) =>
        window.usherTest.events
          .filter(
            (e) =>
              e.name === a.name &&
              Object.entries(a.fields).every(([k, v]) => JSON.stringify(e.data?.[k]) === JSON.stringify(v)),
          )
          .at(a.n - 1),
      { name, fields, n },
    );
  }

  /** Waits for the data channel the worker opened to be open. */
  async dataChannelOpen(): Promise<void> {
    await this.#wait(
      'the data channel to open',
      () => window.usherTest.session?.dataChannel?.readyState === 'open',
    );
  }

  /** session.sendInput in the page. */
  sendInput(data: string): Promise<boolean> {
    return this.page.evaluate((d) => window.usherTest.session!.sendInput(d), data);
  }

  /** session.markActive in the page: viewer activity the SDK does not see itself. */
  markActive(): Promise<void> {
    return this.page.evaluate(() => window.usherTest.session!.markActive());
  }

  /** session.leave in the page. */
  leave(): Promise<void> {
    return this.page.evaluate(() => window.usherTest.session!.leave());
  }

  /** Waits for the <video> to show decoded frames, its time advancing (see videoPlays in chromium.ts). */
  videoPlays(): Promise<{ width: number; height: number; from: number; to: number }> {
    return videoPlays(this.page, this.#context);
  }

  screenshot(name: string): Promise<void> {
    return screenshot(this.page, name);
  }

  close(): Promise<void> {
    return this.page.context().close();
  }

  /** What a failed wait reports: what the page saw (computed in the page) and its console. */
  get #context() {
    return {
      seen: () => window.usherTest?.events.map((e) => `${e.name} ${JSON.stringify(e.data)}`) ?? [],
      console: this.#console,
    };
  }

  #wait<A, R>(what: string, predicate: (arg: A) => R, arg?: A): Promise<NonNullable<R>> {
    return waitInPage(this.page, what, predicate, arg as A, this.#context);
  }
}
