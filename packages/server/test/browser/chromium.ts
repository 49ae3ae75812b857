// The browser tests' Chromium (launchChromium of @usher/testing), one per test file, and screenshots of the
// pages for the people who review a run.
import { mkdirSync } from 'node:fs';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '@usher/testing/chromium';
import type { Browser, Page } from 'playwright-core';

const SCREENSHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));

/** Registers hooks on the current suite: one browser for every test of the file, closed in after(). */
export function useChromium(): { readonly browser: Browser } {
  let browser: Browser | undefined;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });
  return {
    get browser() {
      if (!browser) throw new Error('useChromium: the browser starts in before(); use it inside tests');
      return browser;
    },
  };
}

/**
 * Opens a page in a fresh context. Test pages come from page.route, not from the network, so Chromium's Local
 * Network Access checks count them as public and would block their sockets to 127.0.0.1: the context grants
 * the permission, as a user would. Console lines and page errors are kept in `console`.
 */
export async function newPage(browser: Browser): Promise<{ page: Page; console: string[] }> {
  const page = await browser.newPage({ permissions: ['local-network-access'] });
  const lines: string[] = [];
  page.on('console', (m) => lines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (err) => lines.push(`page error: ${err.message}`));
  return { page, console: lines };
}

/**
 * page.waitForFunction (polling every 50 ms): resolves with the predicate's first truthy value. A failure
 * says what was awaited, what the page had seen (`seen` runs in the page) and its last console lines.
 */
export async function waitInPage<A, R>(
  page: Page,
  what: string,
  predicate: (arg: A) => R,
  arg: A,
  context: { seen: () => string[]; console: string[] },
): Promise<NonNullable<R>> {
  try {
    // the predicate runs in the page: its argument arrives there serialized, as waitForFunction's types say
    const run = predicate as unknown as (arg: unknown) => R;
    const handle = await page.waitForFunction(run, arg as unknown, { polling: 50 });
    return (await handle.jsonValue()) as NonNullable<R>;
  } catch (err) {
    const seen = await page.evaluate(context.seen).catch(() => ['(the page is gone)']);
    throw new Error(
      `waiting for ${what} in the page failed: ${(err as Error).message.split('\n')[0]}\n` +
        `  the page saw:\n    ${seen.join('\n    ') || '(nothing)'}\n` +
        `  console (last 20 lines):\n    ${context.console.slice(-20).join('\n    ') || '(none)'}`,
    );
  }
}

/**
 * Waits for the page's <video> to show decoded frames: a width, then its playback time growing past the time it
 * had once it played. Returns the video's size and the two times read.
 */
export async function videoPlays(
  page: Page,
  context: { seen: () => string[]; console: string[] },
): Promise<{ width: number; height: number; from: number; to: number }> {
  const from = await waitInPage(
    page,
    'the video to have frames',
    () => {
      const v = document.querySelector('video');
      return v && v.videoWidth > 0 && v.currentTime > 0 ? v.currentTime : null;
    },
    undefined,
    context,
  );
  return waitInPage(
    page,
    `the video's time to pass ${from} s`,
    (t: number) => {
      const v = document.querySelector('video')!;
      return v.currentTime > t
        ? { width: v.videoWidth, height: v.videoHeight, from: t, to: v.currentTime }
        : null;
    },
    from,
    context,
  );
}

/** Saves a PNG of the page as screenshots/<name>.png (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: `${SCREENSHOTS}${name}.png` });
}
