// A session: its state, close code and reason, timeline of transitions with causes, participants, and its
// transcript (newest page first, "Older messages" pages back; a toggle shows the debug messages).
import type { Envelope, SessionEvent } from '@usher/protocol';
import type { MessagePage, ParticipantRow, Session } from '../api.ts';
import { confirmDialog } from '../confirm.ts';
import { fill, h, table } from '../dom.ts';
import { badge, closeCode, describeClose, duration, link, time } from '../format.ts';
import { LiveSocket } from '../live.ts';
import { header, liveRefresh, type Page, showError } from '../page.ts';

const PAGE_SIZE = 50;
/** pages read back at most to join the newest messages to those shown */
const CATCH_UP_PAGES = 10;

export const sessionPage: Page = (el, ctx) => {
  const id = ctx.params[0]!;
  const path = `/sessions/${encodeURIComponent(id)}`;
  const head = header(`Session ${id}`);
  const summary = h('section', { class: 'card', 'aria-label': 'Summary' });
  const timeline = h('section', { class: 'card timeline' }, h('h2', null, 'Timeline'));
  const people = h('section', { class: 'card participants' }, h('h2', null, 'Participants'));
  const transcript = h('section', { class: 'card transcript' });
  el.append(head.el, summary, timeline, people, transcript);

  const render = (s: Session) => {
    const ended = s.state === 'ended';
    fill(
      head.el.querySelector('.actions')!,
      badge(s.state),
      ended || s.state === 'ending'
        ? null
        : h('button', { type: 'button', class: 'danger', onclick: () => void end() }, 'End session'),
    );
    const row = (k: string, v: Node | string) => h('div', null, h('dt', null, k), h('dd', null, v));
    fill(
      summary,
      h(
        'dl',
        { class: 'facts' },
        row('State', badge(s.state)),
        row('Project', link(`/projects/${encodeURIComponent(s.projectId)}`, s.projectId)),
        row('Region', s.region),
        row('Agent type', s.agentType ?? '–'),
        row(
          'Worker',
          s.workerId ? link(`/workers?project=${encodeURIComponent(s.projectId)}`, s.workerId) : '–',
        ),
        row('Restarts', String(s.restarts)),
        s.queuePosition === null
          ? null
          : row('Queue', `position ${s.queuePosition}, about ${duration(s.estimatedWaitMs)} to wait`),
        row('Created', time(s.createdAt)),
        row('First active', time(s.activeAt)),
        row('Ended', time(s.endedAt)),
        row('Close code', closeCode(s.endCode, s.endReason)),
        row('Outcome', s.outcome ? badge(s.outcome) : '–'),
        s.endCode === null ? null : row('Meaning', describeClose(s.endCode, s.endReason)),
      ),
    );
    fill(
      timeline,
      h('h2', null, 'Timeline'),
      table(
        ['At', 'From', 'To', 'Cause'],
        (s.timeline ?? []).map((t) =>
          h(
            'tr',
            null,
            h('td', null, time(t.at)),
            h('td', null, t.from ? badge(t.from) : '–'),
            h('td', null, badge(t.to)),
            h('td', null, h('code', null, t.cause)),
          ),
        ),
        'No transitions recorded.',
      ),
    );
  };

  const end = async () => {
    const ok = await confirmDialog({
      title: `End session ${id}?`,
      body: 'A waiting session is canceled; a seated one shuts its worker down. Its viewers see close code 1000.',
      confirm: 'End session',
      danger: true,
    });
    if (!ok) return;
    try {
      render(await ctx.api.post<Session>(`${path}/end`));
    } catch (err) {
      showError(head.error, err);
    }
  };

  // the session's own socket, as an observer: its events, room messages included; it closes for good with the
  // session's close code once the session has ended
  const room = new LiveSocket<SessionEvent>(
    `${path}/ws`,
    ctx.api.key,
    // a drop, a failure on the server's side, a restart: the socket is opened again
    (code) => code === 1006 || code === 1011 || code === 1012,
  );
  room.start();

  const peopleError = h('p', { class: 'error', role: 'alert', hidden: true });
  const stopSession = liveRefresh(
    room,
    head.error,
    async () => {
      render(await ctx.api.get<Session>(path));
      try {
        const { participants } = await ctx.api.get<{ participants: ParticipantRow[] }>(
          `${path}/participants`,
        );
        fill(
          people,
          h('h2', null, 'Participants'),
          table(
            ['Identity', 'Kind', 'Name', 'Joined', 'Left'],
            participants.map((p) =>
              h(
                'tr',
                { 'data-identity': p.identity },
                h('td', null, p.identity),
                h('td', null, badge(p.kind, 'kind')),
                h('td', null, p.name ?? '–'),
                h('td', null, time(p.joinedAt)),
                h('td', null, p.leftAt ? time(p.leftAt) : badge('here', 'present')),
              ),
            ),
            'Nobody has joined.',
          ),
        );
      } catch (err) {
        fill(people, h('h2', null, 'Participants'), peopleError);
        showError(peopleError, err);
      }
    },
    (e) => e.type !== 'session.message' && e.type !== 'session.afk_warning',
  );

  // the transcript: pages of messages, oldest first; `older` is the cursor of the page before the first
  let messages: Envelope[] = [];
  let older: { before: string; beforeId: string | null } | null = null;
  let debug = false;
  const list = h('ol', { class: 'messages' });
  const olderButton = h('button', { type: 'button', class: 'older', hidden: true }, 'Older messages');
  const toggle = h('input', { type: 'checkbox', name: 'debug' });
  const transcriptError = h('p', { class: 'error', role: 'alert', hidden: true });
  transcript.append(
    h(
      'header',
      { class: 'card-header' },
      h('h2', null, 'Transcript'),
      h('label', { class: 'toggle' }, toggle, ' Show debug messages'),
    ),
    transcriptError,
    olderButton,
    list,
  );
  const page = async (cursor: typeof older) => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), include_debug: String(debug) });
    if (cursor) {
      q.set('before', cursor.before);
      if (cursor.beforeId) q.set('before_id', cursor.beforeId);
    }
    return ctx.api.get<MessagePage>(`${path}/messages?${q}`);
  };
  const merge = (more: Envelope[]) => {
    const byId = new Map(messages.map((m) => [m.id, m]));
    for (const m of more) byId.set(m.id, m);
    messages = [...byId.values()].sort((a, b) => a.at.localeCompare(b.at) || a.id.localeCompare(b.id));
  };
  const drawMessages = () => {
    olderButton.hidden = older === null;
    fill(
      list,
      messages.length === 0 ? h('li', { class: 'empty' }, 'No messages recorded.') : null,
      messages.map((m) =>
        h(
          'li',
          { class: `message type-${m.type}`, 'data-id': m.id, 'data-type': m.type },
          h('time', null, time(m.at)),
          h('span', { class: 'from' }, `${m.from.identity} (${m.from.kind})`),
          badge(m.type, 'type'),
          h('span', { class: 'text' }, textOf(m)),
        ),
      ),
    );
  };
  const cursorOf = (p: MessagePage) =>
    p.hasMore && p.nextBefore ? { before: p.nextBefore, beforeId: p.nextBeforeId } : null;
  /**
   * Reads the newest page again: from scratch (reset), or merged into what is shown (new messages). More than a
   * page may have been said since the last read: pages are read back until one reaches what is shown, so that
   * none is skipped (after CATCH_UP_PAGES, what is shown starts over from the newest, with older pages below).
   */
  const newest = async (reset: boolean) => {
    let p = await page(null);
    if (reset) {
      messages = [];
      older = null;
    }
    if (messages.length === 0) {
      merge(p.messages);
      older = cursorOf(p);
      drawMessages();
      return;
    }
    const shown = new Set(messages.map((m) => m.id));
    const reaches = (q: MessagePage) => q.messages.some((m) => shown.has(m.id));
    const fresh = [...p.messages];
    for (let n = 1; !reaches(p) && cursorOf(p) && n < CATCH_UP_PAGES; n++) {
      p = await page(cursorOf(p));
      fresh.push(...p.messages);
    }
    if (!reaches(p) && cursorOf(p)) {
      messages = [];
      older = cursorOf(p);
    }
    merge(fresh);
    drawMessages();
  };
  olderButton.addEventListener('click', async () => {
    olderButton.disabled = true;
    try {
      const p = await page(older);
      merge(p.messages);
      older = cursorOf(p);
      drawMessages();
    } catch (err) {
      showError(transcriptError, err);
    } finally {
      olderButton.disabled = false;
    }
  });
  toggle.addEventListener('change', () => {
    debug = toggle.checked;
    newest(true).catch((err) => showError(transcriptError, err));
  });
  let loaded = false;
  const stopTranscript = liveRefresh(
    room,
    transcriptError,
    async () => {
      await newest(!loaded);
      loaded = true;
    },
    // recorded messages: what is said, who comes and goes, and what was recorded by the time of a change
    (e) =>
      e.type === 'session.message' ||
      e.type === 'session.participant_joined' ||
      e.type === 'session.participant_left' ||
      e.type === 'session.status_changed',
  );
  // the socket closes for good as the session ends: the page reads the session and its transcript once more, in
  // case it missed the last events (the server records every departure before anyone can read the ended session)
  const offClosed = room.onStatus((status) => {
    if (status !== 'closed') return;
    stopSession.refresh();
    stopTranscript.refresh();
  });
  return () => {
    offClosed();
    stopSession();
    stopTranscript();
    room.close();
  };
};

/** What a message says: its text when it has one, who came or went, else its data as JSON. */
function textOf(m: Envelope): string {
  const data = m.data as { text?: unknown; participant?: { identity?: string; name?: string } } | null;
  if (typeof m.data === 'string') return m.data;
  if (typeof data?.text === 'string') return data.text;
  const who = data?.participant?.name ?? data?.participant?.identity;
  if (m.type === 'participant_joined' && who) return `${who} joined`;
  if (m.type === 'participant_left' && who) return `${who} left`;
  const json = JSON.stringify(m.data);
  return json === undefined ? '' : json.length > 500 ? `${json.slice(0, 500)}…` : json;
}
