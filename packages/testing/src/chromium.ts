// The real browser of Usher's browser tests and benchmarks: Debian's headless Chromium driven by
// playwright-core (never a downloaded one), with the flags this kind of machine needs.
import { type Browser, chromium } from 'playwright-core';

/** Where `apt-get install chromium` puts it (.ci/run installs it when a test file needs it). */
export const CHROMIUM_PATH = process.env.USHER_TEST_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // the stream's <video> plays without a click
  '--autoplay-policy=no-user-gesture-required',
];

export async function launchChromium(): Promise<Browser> {
  try {
    return await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
  } catch (err) {
    throw new Error(
      `could not start Chromium at ${CHROMIUM_PATH}: install Debian's package (apt-get install -y chromium) ` +
        `or point USHER_TEST_CHROMIUM at another build (${(err as Error).message.split('\n')[0]})`,
    );
  }
}
