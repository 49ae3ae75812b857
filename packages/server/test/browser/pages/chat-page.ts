// The demo's chat page (packages/cli/demo-page/chat.html) as a test drives it: through its own controls, reading
// what it shows — the state, the conversation, the to-do panel, the people, the transcript view.
import type { Browser, Page } from 'playwright-core';
import { newPage, screenshot, waitInPage } from '../chromium.ts';

/** One line of the conversation or the transcript view, as the page shows it. */
export interface ShownLine {
  type: string;
  id: string | null;
  from: string | null;
  /** sending, sent, saved or failed: a message of this tab's own */
  delivery: string | null;
  who: string;
  text: string;
}

export class ChatPage {
  readonly page: Page;
  readonly #console: string[];

  private constructor(page: Page, console: string[]) {
    this.page = page;
    this.#console = console;
  }

  /** Opens the chat page (or an invite link) in a fresh browser context. */
  static async open(browser: Browser, url: string): Promise<ChatPage> {
    const { page, console } = await newPage(browser);
    await page.goto(url);
    return new ChatPage(page, console);
  }

  async waitForState(state: string): Promise<void> {
    await this.#wait(`state ${state}`, (s) => document.getElementById('state')?.dataset.state === s, state);
  }

  async sessionId(): Promise<string> {
    return (await this.page.locator('#session-id').textContent()) ?? '';
  }

  async identity(): Promise<string> {
    return (await this.page.locator('#identity').textContent()) ?? '';
  }

  /** The invite link, once the page has one. */
  inviteLink(): Promise<string> {
    return this.#wait('an invite link', () => {
      const value = (document.getElementById('invite-link') as HTMLInputElement).value;
      return value.startsWith('http') ? value : null;
    });
  }

  /** On an invite link: joins under a name. */
  async join(name: string): Promise<void> {
    await this.page.locator('#join-name').fill(name);
    await this.page.locator('#join-button').click();
  }

  /** Types a message and sends it with the Send button. */
  async say(text: string): Promise<void> {
    await this.page.locator('#say-text').fill(text);
    await this.page.locator('#say-send').click();
  }

  /** The conversation, top to bottom. */
  messages(): Promise<ShownLine[]> {
    return this.#lines('#messages li');
  }

  /** Waits for a line of the conversation of this type whose text contains `text`; returns it. */
  waitForMessage(type: string, text: string, fields: Partial<ShownLine> = {}): Promise<ShownLine> {
    return this.#wait(
      `a ${type} line with "${text}" ${JSON.stringify(fields)}`,
      (a) => {
        for (const li of Array.from(document.querySelectorAll<HTMLElement>('#messages li'))) {
          const line = {
            type: li.dataset.type ?? '',
            id: li.dataset.id ?? null,
            from: li.dataset.from ?? null,
            delivery: li.dataset.delivery ?? null,
            who: li.querySelector('.who')?.textContent ?? '',
            text: li.querySelector('.text')?.textContent ?? '',
          };
          if (
            line.type === a.type &&
            line.text.includes(a.text) &&
            Object.entries(a.fields).every(([k, v]) => line[k as keyof typeof line] === v)
          )
            return line;
        }
        return null;
      },
      { type, text, fields },
    );
  }

  /** Waits until the to-do panel shows exactly these items, in order. */
  async waitForTodos(items: string[]): Promise<void> {
    await this.#wait(
      `the to-do list ${JSON.stringify(items)}`,
      (want) => {
        const shown = Array.from(document.querySelectorAll('#todos li')).map((li) => li.textContent);
        return JSON.stringify(shown) === JSON.stringify(want);
      },
      items,
    );
  }

  todos(): Promise<string[]> {
    return this.page.locator('#todos li').allInnerTexts();
  }

  people(): Promise<string[]> {
    return this.page.locator('#people li').allInnerTexts();
  }

  /** Waits until the people panel lists someone whose line contains `text`. */
  async waitForPerson(text: string): Promise<void> {
    await this.#wait(
      `${text} in the room`,
      (t) => Array.from(document.querySelectorAll('#people li')).some((li) => li.textContent?.includes(t)),
      text,
    );
  }

  async end(): Promise<void> {
    await this.page.locator('#end').click();
  }

  /** Waits for the session to end; returns what the page says (code, reason, outcome). */
  waitForEnded(): Promise<string> {
    return this.#wait('the session to end', () => {
      const text = document.getElementById('ended')?.textContent ?? '—';
      return document.getElementById('state')?.dataset.state === 'ended' && text !== '—' ? text : null;
    });
  }

  /** The transcript view, top (oldest) to bottom. */
  transcript(): Promise<ShownLine[]> {
    return this.#lines('#transcript-list li');
  }

  /** Waits until the transcript view has read a page (its status says how many messages it shows). */
  waitForTranscript(): Promise<string> {
    return this.#wait('the transcript view to show a page', () => {
      const status = document.getElementById('transcript-status')?.textContent ?? '';
      return /recorded messages/.test(status) ? status : null;
    });
  }

  /** Clicks "Load the newest" and waits for the view to show the newest page again. */
  async loadNewest(): Promise<string> {
    await this.page.evaluate(() => {
      document.getElementById('transcript-status')!.textContent = '';
    });
    await this.page.locator('#transcript-load').click();
    return this.waitForTranscript();
  }

  /** Whether the view can page further back. */
  async hasOlder(): Promise<boolean> {
    return !(await this.page.locator('#transcript-older').isDisabled());
  }

  /** Clicks "Older" and waits for the older page to be shown above the others. */
  async older(): Promise<void> {
    const before = await this.page.locator('#transcript-list li').count();
    await this.page.locator('#transcript-older').click();
    await this.#wait(
      'an older page',
      (n) =>
        document.querySelectorAll('#transcript-list li').length > n &&
        /recorded messages/.test(document.getElementById('transcript-status')?.textContent ?? ''),
      before,
    );
  }

  /** Pages back with "Older" until the start of the session; returns the whole view. */
  async readWholeTranscript(): Promise<ShownLine[]> {
    await this.waitForTranscript();
    while (await this.hasOlder()) await this.older();
    return this.transcript();
  }

  /** Ticks or unticks "Show debug messages" and waits for the view to read the newest page again. */
  async showDebug(on: boolean): Promise<void> {
    await this.page.locator('#transcript-debug').setChecked(on);
    await this.#wait(
      `the transcript view ${on ? 'with' : 'without'} debug messages`,
      (debug) => {
        const status = document.getElementById('transcript-status')?.textContent ?? '';
        return /recorded messages/.test(status) && status.includes('debug included') === debug;
      },
      on,
    );
  }

  screenshot(name: string): Promise<void> {
    return screenshot(this.page, name);
  }

  close(): Promise<void> {
    return this.page.context().close();
  }

  #lines(selector: string): Promise<ShownLine[]> {
    return this.page.locator(selector).evaluateAll((lis) =>
      (lis as HTMLElement[]).map((li) => ({
        type: li.dataset.type ?? '',
        id: li.dataset.id ?? null,
        from: li.dataset.from ?? null,
        delivery: li.dataset.delivery ?? null,
        who: li.querySelector('.who')?.textContent ?? '',
        text: li.querySelector('.text')?.textContent ?? '',
      })),
    );
  }

  /** What a failed wait reports: the page's state, conversation and transcript status, and its console. */
  get #context() {
    return {
      seen: () => [
        `state: ${document.getElementById('state')?.dataset.state}, ended: ${document.getElementById('ended')?.textContent}`,
        ...Array.from(document.querySelectorAll<HTMLElement>('#messages li')).map(
          (li) => `${li.dataset.type} ${li.dataset.delivery ?? ''} ${li.textContent}`,
        ),
        `to-do: ${Array.from(document.querySelectorAll('#todos li'))
          .map((li) => li.textContent)
          .join(' | ')}`,
        `transcript: ${document.getElementById('transcript-status')?.textContent}`,
      ],
      console: this.#console,
    };
  }

  #wait<A, R>(what: string, predicate: (arg: A) => R, arg?: A): Promise<NonNullable<R>> {
    return waitInPage(this.page, what, predicate, arg as A, this.#context);
  }
}
