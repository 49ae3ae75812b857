// The chat demo in real Chromium: the demo page (chat.html) served by the server, the demo agent as a real worker
// process. Two tabs share one session through the invite link, both talk, the agent answers and keeps the
// to-do list on both; the session is ended and its recorded transcript reads back in order, page by page,
// without debug notes unless asked for. A killed agent comes back with its list (auto-restart).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { Envelope, MessagePage } from '@usher/protocol';
import { eventually, gone } from '../fixtures/processes.ts';
import { useChatServer } from './chat-server.ts';
import { useChromium } from './chromium.ts';
import { ChatPage, type ShownLine } from './pages/chat-page.ts';
import { ensureSdkBuilt } from './pages/sdk-page.ts';

/** The transcript view pages 5 messages at a time, so that a short chat has several pages. */
const PAGE_SIZE = 5;

describe('the chat demo in Chromium', () => {
  before(() => ensureSdkBuilt());
  const chat = useChatServer();
  const chromium = useChromium();

  /** Every recorded message of a session, as the API gives it (admin key), oldest first. */
  async function recorded(sessionId: string, includeDebug: boolean): Promise<Envelope[]> {
    const r = await chat.api<MessagePage>(
      'GET',
      `/sessions/${sessionId}/messages?limit=100&include_debug=${includeDebug}`,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.hasMore, false, 'one page holds this short chat');
    return r.body.messages;
  }

  const ids = (lines: { id: string | null }[]) => lines.map((l) => l.id);

  test('two tabs in one room: both talk, the agent answers, both see the to-do list; ended, the transcript reads back in order', async () => {
    await chat.readyWorkers('chat', 1);
    // at localhost, as the README says to open it (the server listens on 127.0.0.1): the page's socket must go
    // to the host the page came from, which its origin may open
    const origin = chat.url.replace('127.0.0.1', 'localhost');
    const ana = await ChatPage.open(chromium.browser, `${origin}/chat.html?pageSize=${PAGE_SIZE}`);
    let bo: ChatPage | null = null;
    try {
      await ana.waitForState('active');
      const sessionId = await ana.sessionId();
      const anaIdentity = await ana.identity();
      assert.match(anaIdentity, /^viewer_/, 'the tab that started the chat is its viewer');
      await ana.waitForMessage('agent_text', 'I keep a to-do list');

      // the second tab opens the invite link and joins under a name of its own
      const link = await ana.inviteLink();
      assert.ok(link.startsWith(`${origin}/chat.html#invite=`), link);
      bo = await ChatPage.open(chromium.browser, link);
      await bo.join('Bo');
      await bo.waitForState('active');
      assert.equal(await bo.sessionId(), sessionId, 'the same session');
      assert.equal(await bo.identity(), 'Bo');
      await ana.waitForPerson('Bo (user)');
      await ana.waitForMessage('agent_text', 'Welcome, Bo.');
      // what was said before Bo came in is shown to Bo too
      await bo.waitForMessage('agent_text', 'I keep a to-do list');

      // both talk; the agent answers each, and its list reaches both tabs
      await ana.say('add buy milk');
      const sent = await ana.waitForMessage('user_text', 'add buy milk', { delivery: 'saved' });
      assert.equal(sent.who, 'You');
      assert.ok(sent.id, 'the acknowledged message carries its envelope id');
      await bo.waitForMessage('user_text', 'add buy milk', { id: sent.id, from: anaIdentity });
      await ana.waitForMessage('agent_text', 'Added #1: buy milk');
      await ana.waitForTodos(['buy milk']);
      await bo.waitForTodos(['buy milk']);

      await bo.say('add call Ana');
      await bo.waitForMessage('user_text', 'add call Ana', { delivery: 'saved' });
      await ana.waitForMessage('user_text', 'add call Ana', { who: 'Bo', from: 'Bo' });
      await bo.waitForMessage('agent_text', 'Added #2: call Ana (for Bo)');
      await ana.waitForTodos(['buy milk', 'call Ana']);
      await bo.waitForTodos(['buy milk', 'call Ana']);

      for (const tab of [ana, bo]) {
        const lines = await tab.messages();
        assert.equal(
          new Set(ids(lines.filter((l) => l.id))).size,
          lines.filter((l) => l.id).length,
          'no message twice',
        );
        assert.deepEqual(
          lines.filter((l) => l.type === 'debug'),
          [],
          'debug notes stay out of the conversation',
        );
      }
      await ana.screenshot('chat-two-tabs-ana');
      await bo.screenshot('chat-two-tabs-bo');

      // Bo ends the session for everyone: both tabs show the close code and reason
      await bo.end();
      assert.equal(await bo.waitForEnded(), '1000 completed (disconnected)');
      assert.equal(await ana.waitForEnded(), '1000 completed (disconnected)');
      const ended = await chat.api<{ state: string; endCode: number }>('GET', `/sessions/${sessionId}`);
      assert.equal(ended.body.state, 'ended');
      assert.equal(ended.body.endCode, 1000);

      // the last words of the recording are the three participants leaving: the tab read its transcript when
      // the session ended, and reads it again now that they are stored
      await eventually('the three participants leaving to be recorded', async () => {
        const left = (await recorded(sessionId, false)).filter((m) => m.type === 'participant_left');
        return left.length === 3;
      });
      await ana.waitForTranscript();
      await ana.loadNewest();

      // the transcript view (read with the tab's own token, after the end) shows the newest page first...
      const all = await recorded(sessionId, false);
      const withDebug = await recorded(sessionId, true);
      assert.ok(all.length > 2 * PAGE_SIZE, `a few pages to read (${all.length} messages)`);
      assert.ok(withDebug.length > all.length, 'the agent left debug notes');
      assert.deepEqual(ids(await ana.transcript()), ids(all.slice(-PAGE_SIZE)), 'the newest page');
      assert.equal(await ana.hasOlder(), true);
      // ...and "Older" pages back to the start: every recorded message once, in order, no debug notes
      const whole = await ana.readWholeTranscript();
      assert.deepEqual(ids(whole), ids(all));
      assert.deepEqual(
        whole.filter((l) => l.type === 'debug'),
        [],
      );
      const times = all.map((m) => m.at);
      assert.deepEqual([...times].sort(), times, 'oldest first');
      assert.deepEqual(talk(whole), [
        ['user_text', 'add buy milk'],
        ['agent_text', `Added #1: buy milk (for ${anaIdentity}).`],
        ['user_text', 'add call Ana'],
        ['agent_text', 'Added #2: call Ana (for Bo).'],
      ]);
      const types = new Set(whole.map((l) => l.type));
      for (const type of ['participant_joined', 'participant_left', 'complete_todo_list'])
        assert.ok(types.has(type), `${type} is recorded and shown`);
      await ana.screenshot('chat-transcript');

      // with the debug toggle, the same view pages through the debug notes too
      await ana.showDebug(true);
      const debugWhole = await ana.readWholeTranscript();
      assert.deepEqual(ids(debugWhole), ids(withDebug));
      assert.ok(debugWhole.some((l) => l.type === 'debug'));
      await ana.screenshot('chat-transcript-debug');
      await ana.showDebug(false);
      assert.deepEqual(ids(await ana.transcript()), ids(all.slice(-PAGE_SIZE)));
    } finally {
      await bo?.close();
      await ana.close();
    }
  });

  test("a tab whose connection drops shows, once back, what was said meanwhile: once each, the agent's list too", async () => {
    await chat.readyWorkers('chat', 1);
    const ana = await ChatPage.open(chromium.browser, `${chat.url}/chat.html`);
    let bo: ChatPage | null = null;
    try {
      await ana.waitForState('active');
      await ana.waitForMessage('agent_text', 'I keep a to-do list');
      bo = await ChatPage.open(chromium.browser, await ana.inviteLink());
      await bo.join('Bo');
      await bo.waitForState('active');
      await ana.waitForPerson('Bo (user)');

      // Bo's network fails; the room goes on without him
      const restore = chat.cutOff('Bo');
      await bo.waitForMessage('note', 'Connection lost (1006)');
      await ana.say('add water the plants');
      await ana.waitForMessage('agent_text', 'Added #1: water the plants');
      await ana.waitForTodos(['water the plants']);
      const during = await bo.messages();
      assert.deepEqual(
        during.filter((l) => l.text.includes('water the plants')),
        [],
        'nothing of it reached Bo while he was cut off',
      );

      // back: the page reconnects, and the server replays what it missed before anything live
      restore();
      await bo.waitForMessage('note', 'Reconnected');
      await bo.waitForMessage('user_text', 'add water the plants', { from: await ana.identity() });
      await bo.waitForMessage('agent_text', 'Added #1: water the plants');
      await bo.waitForTodos(['water the plants']);
      await bo.say('add buy seeds');
      await ana.waitForTodos(['water the plants', 'buy seeds']);
      await bo.waitForTodos(['water the plants', 'buy seeds']);
      const lines = (await bo.messages()).filter((l) => l.id);
      assert.equal(new Set(ids(lines)).size, lines.length, 'no message twice');
      await bo.screenshot('chat-replayed-after-drop');
    } finally {
      await bo?.close();
      await ana.close();
    }
  });

  test('the agent process killed mid-chat: the page shows the restart, the agent comes back with the list', async () => {
    await chat.readyWorkers('chat', 1);
    const tab = await ChatPage.open(chromium.browser, `${chat.url}/chat.html`);
    try {
      await tab.waitForState('active');
      const sessionId = await tab.sessionId();
      await tab.say('add water the plants');
      await tab.waitForTodos(['water the plants']);

      const pid = await chat.agentPid(sessionId);
      process.kill(pid, 'SIGKILL');
      assert.equal(await gone(pid), true);
      await tab.waitForMessage('error', 'AGENT_CRASHED');
      // the fresh agent got the saved list and the transcript so far with its assignment
      const back = await tab.waitForMessage('agent_text', 'I am back after a restart; the list has 1 item, ');
      assert.match(back.text, /I have read our last \d+ messages\.$/);
      await tab.waitForState('active');
      await tab.waitForTodos(['water the plants']);
      const session = await chat.api<{ restarts: number; state: string }>('GET', `/sessions/${sessionId}`);
      assert.equal(session.body.restarts, 1);
      assert.equal(session.body.state, 'active');

      await tab.say('done 1');
      await tab.waitForMessage('agent_text', 'Done: water the plants.');
      await tab.waitForTodos(['water the plants (done)']);
      await tab.screenshot('chat-agent-restarted');
      await tab.end();
      assert.equal(await tab.waitForEnded(), '1000 completed (disconnected)');
    } finally {
      await tab.close();
    }
  });
});

/** The people's and the agent's words, after the greetings. */
function talk(lines: ShownLine[]): [string, string][] {
  return lines
    .filter((l) => (l.type === 'user_text' || l.type === 'agent_text') && !/^(Hello!|Welcome)/.test(l.text))
    .map((l) => [l.type, l.text]);
}
