// The Epic frontend test page as a test drives it: epic-player.ts bundled with esbuild, served on the Usher
// server's origin, and helpers that connect Epic's library to a session socket and wait on what it saw.
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { newPage, screenshot, videoPlays, waitInPage } from '../chromium.ts';

const PAGE_PATH = '/browser-test/epic.html';
const SCRIPT_PATH = '/browser-test/epic-player.js';
const HTML = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8" /><title>Epic Pixel Streaming frontend on Usher</title></head>
  <body style="margin:0;background:#111">
    <div id="player" style="width:640px;height:360px;position:relative"></div>
    <script type="module" src="${SCRIPT_PATH}"></script>
  </body>
</html>`;

/** Bundles epic-player.ts and Epic's library into one browser script (in memory). */
export async function bundleEpicPlayer(): Promise<string> {
  const result = await build({
    entryPoints: [new URL('./epic-player.ts', import.meta.url).pathname],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error',
  });
  return result.outputFiles[0]!.text;
}

interface EpicHooks {
  events: { name: string; data: unknown }[];
  signals: string[];
  connect(ss: string): void;
}

declare global {
  interface Window {
    epicTest: EpicHooks;
  }
}

export class EpicPage {
  readonly page: Page;
  readonly #console: string[];

  private constructor(page: Page, console: string[]) {
    this.page = page;
    this.#console = console;
  }

  /** Opens the page in a fresh browser context, on the server's origin (script: bundleEpicPlayer's). */
  static async open(browser: Browser, serverUrl: string, script: string): Promise<EpicPage> {
    const { page, console } = await newPage(browser);
    const p = new EpicPage(page, console);
    await page.route(`${serverUrl}${PAGE_PATH}`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: HTML }),
    );
    await page.route(`${serverUrl}${SCRIPT_PATH}`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/javascript; charset=utf-8', body: script }),
    );
    await page.goto(`${serverUrl}${PAGE_PATH}`);
    await p.#wait('the page to load the library', () => window.epicTest !== undefined);
    return p;
  }

  /** Points Epic's library at a session socket (its URL with ?token=). */
  connect(ss: string): Promise<void> {
    return this.page.evaluate((url) => window.epicTest.connect(url), ss);
  }

  /** Waits for an event of the library and returns its data. */
  event(name: string): Promise<unknown> {
    return this.#wait(
      `the library's ${name} event`,
      (n) => window.epicTest.events.find((e) => e.name === n) ?? false,
      name,
    ).then((e) => (e as { data: unknown }).data);
  }

  eventNames(): Promise<string[]> {
    return this.page.evaluate(() => window.epicTest.events.map((e) => e.name));
  }

  /** The signalling messages on the library's socket so far: `in <type>` and `out <type>`. */
  signals(): Promise<string[]> {
    return this.page.evaluate(() => window.epicTest.signals);
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
      seen: () => [
        ...(window.epicTest?.events.map((e) => `event ${e.name} ${JSON.stringify(e.data)}`) ?? []),
        `signals: ${window.epicTest?.signals.join(', ')}`,
      ],
      console: this.#console,
    };
  }

  #wait<A, R>(what: string, predicate: (arg: A) => R, arg?: A): Promise<NonNullable<R>> {
    return waitInPage(this.page, what, predicate, arg as A, this.#context);
  }
}
