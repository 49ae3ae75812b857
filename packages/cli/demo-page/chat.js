// The chat page: a room with the demo agent (project `chat`) through the Web SDK. Start a chat or join one by
// its invite link, talk, follow the agent's to-do list, end the session, and read the recorded transcript.
import { UsherSession } from '/sdk/usher.js';

const PROJECT = 'chat';
const $ = (id) => document.getElementById(id);
/** transcript page size: ?pageSize=5 shows the paging with a short conversation */
const PAGE_SIZE = Math.min(
  100,
  Math.max(1, Number(new URLSearchParams(location.search).get('pageSize')) || 20),
);

let session = null;
/** envelope ids already in the conversation: live events, the catch-up read and acks meet here */
let shown = new Set();
/** where the transcript view pages back from: null when it has reached the first message */
let cursor = null;

// ------------------------------------------------------------------ rendering

/** A sortable key for a time stamp: the server writes milliseconds for events, microseconds for messages. */
function timeKey(at) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(at);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(6, '0').slice(0, 6)}` : at;
}

const clock = (at) => new Date(at).toLocaleTimeString();

function nameOf(participant) {
  if (!participant) return 'someone';
  if (session && participant.identity === session.identity) return 'You';
  if (participant.kind === 'agent') return 'Agent';
  // identities the server made up (viewer_0mx98j9vy00001fde5ef9) by their kind and last characters
  const made = /^(viewer|user|observer)_[0-9a-z]{8,}$/.exec(participant.identity);
  return made ? `${made[1]} …${participant.identity.slice(-4)}` : participant.identity;
}

const textOf = (data) => (typeof data?.text === 'string' ? data.text : JSON.stringify(data));

/** How a recorded message reads: who said it, what, and whether it is a line of the room's own. */
function describe(m) {
  switch (m.type) {
    case 'agent_text':
    case 'user_text':
    case 'transcript':
      return { who: nameOf(m.from), text: textOf(m.data), system: false };
    case 'participant_joined':
    case 'participant_left': {
      const p = m.data?.participant ?? m.from;
      return {
        who: '',
        text: `${nameOf(p)} ${m.type === 'participant_joined' ? 'joined' : 'left'}`,
        system: true,
      };
    }
    case 'complete_todo_list': {
      const items = Array.isArray(m.data?.items) ? m.data.items : [];
      const list = items.map((i) => `${i.done ? '✓' : '○'} ${i.text}`).join(', ');
      return { who: nameOf(m.from), text: `to-do list: ${list || '(empty)'}`, system: true };
    }
    case 'state_change_notification':
      return { who: nameOf(m.from), text: `state: ${JSON.stringify(m.data)}`, system: true };
    default:
      return { who: nameOf(m.from), text: `${m.type} ${JSON.stringify(m.data)}`, system: true };
  }
}

/** One line of a message list; lists are kept in time order by data-key. */
function line({ key, id, type, from, at, who, text, system }) {
  const li = document.createElement('li');
  li.dataset.key = key;
  li.dataset.type = type;
  if (id) li.dataset.id = id;
  if (from) li.dataset.from = from.identity;
  if (system) li.classList.add('system');
  if (from && session && from.identity === session.identity) li.classList.add('mine');
  if (who) {
    const b = document.createElement('b');
    b.className = 'who';
    b.textContent = who;
    li.append(b, ' ');
  }
  const span = document.createElement('span');
  span.className = 'text';
  span.textContent = text;
  const time = document.createElement('time');
  time.dateTime = at;
  time.textContent = clock(at);
  li.append(span, ' ', time);
  return li;
}

function insertOrdered(list, li) {
  const after = [...list.children].find((other) => other.dataset.key > li.dataset.key);
  list.insertBefore(li, after ?? null);
  if (list === $('messages')) li.scrollIntoView({ block: 'nearest' });
}

/** A room message in the conversation, once (debug notes stay in the transcript view). */
function showMessage(m) {
  if (shown.has(m.id)) return;
  shown.add(m.id);
  if (m.type === 'complete_todo_list') showTodos(m.data?.items);
  if (m.type === 'debug' || m.type === 'participant_joined' || m.type === 'participant_left') return;
  insertOrdered($('messages'), line({ key: timeKey(m.at) + m.id, id: m.id, ...m, ...describe(m) }));
}

/** A line of this page's own (state, errors, presence), at the time it happened here. */
function note(text, type = 'note') {
  const at = new Date().toISOString();
  insertOrdered($('messages'), line({ key: timeKey(at), type, at, text, system: true }));
}

function showTodos(items) {
  const list = $('todos');
  list.replaceChildren(
    ...(Array.isArray(items) ? items : []).map((item) => {
      const li = document.createElement('li');
      li.textContent = item.text;
      li.classList.toggle('done', item.done === true);
      if (item.done) li.append(' (done)');
      return li;
    }),
  );
  $('todos-empty').hidden = list.children.length > 0;
}

function setState(state) {
  $('state').textContent = state;
  $('state').dataset.state = state;
  const live = state === 'active';
  $('say-text').disabled = !live;
  $('say-send').disabled = !live;
}

function showPerson(p, here) {
  const id = `person-${p.identity}`;
  document.getElementById(id)?.remove();
  if (!here) return;
  const li = document.createElement('li');
  li.id = id;
  li.textContent = `${nameOf(p)} (${p.kind})${nameOf(p) === p.identity ? '' : ` ${p.identity}`}`;
  $('people').append(li);
}

// ------------------------------------------------------------------ the session

async function begin(open) {
  $('start').disabled = true;
  $('ended').textContent = '—';
  $('messages').replaceChildren();
  $('people').replaceChildren();
  $('transcript-list').replaceChildren();
  $('transcript-status').textContent = '';
  showTodos([]);
  shown = new Set();
  cursor = null;
  setState('requesting');
  try {
    session = await open();
  } catch (err) {
    setState('ended');
    $('ended').textContent = `${err.code}: ${err.message}`;
    note(`Could not open the chat: ${err.message}`, 'error');
    $('start').disabled = false;
    return;
  }
  window.usherSession = session;
  $('session-id').textContent = session.id;
  $('identity').textContent = session.identity ?? '—';
  $('end').disabled = false;
  $('transcript-load').disabled = false;
  setState(session.state);
  follow(session);
  if (session.state === 'active') void catchUp();
  void invite();
}

function follow(s) {
  s.on('state', ({ state, previous, cause }) => {
    setState(state);
    if (state === 'active') void catchUp();
    if (state === 'connecting' && previous === 'active')
      note(`The agent is being restarted (${cause})…`, 'state');
  });
  s.on('message', showMessage);
  // the room lists who is already there as they join too: "is here" is true of both
  s.on('participantJoined', (p) => {
    showPerson(p, true);
    note(p.identity === s.identity ? 'You joined' : `${nameOf(p)} is here`, 'participant_joined');
  });
  s.on('participantLeft', (p) => {
    showPerson(p, false);
    note(`${nameOf(p)} left`, 'participant_left');
  });
  s.on('error', ({ code, message, recoverable }) =>
    note(`${code}: ${message}${recoverable ? ' (the session goes on)' : ''}`, 'error'),
  );
  s.on('reconnecting', ({ attempt, code }) =>
    note(`Connection lost (${code}); reconnecting, attempt ${attempt}…`),
  );
  s.on('reconnected', ({ sessionId, fresh }) => {
    $('session-id').textContent = sessionId;
    note(fresh ? `Reconnected on a new session ${sessionId}` : 'Reconnected');
  });
  s.on('ended', ({ code, reason, outcome }) => {
    setState('ended');
    $('ended').textContent = `${code} ${reason} (${outcome})`;
    note(`The session ended: close code ${code}, reason ${reason}`, 'ended');
    $('end').disabled = true;
    $('start').disabled = false;
    $('invite-link').value = '';
    $('invite-copy').disabled = true;
    $('invite-open').hidden = true;
    $('people').replaceChildren();
    // the recording is kept: read it from the start
    void loadTranscript(false);
  });
}

/** Messages sent before this page was in the room (the agent's greeting, an earlier conversation). */
async function catchUp() {
  try {
    const page = await session.history({ limit: 100 });
    for (const m of page.messages) showMessage(m);
  } catch (err) {
    note(`Could not read the earlier messages: ${err.message}`, 'error');
  }
}

async function invite() {
  try {
    const ticket = await session.invite();
    const link = `${location.origin}${location.pathname}#invite=${encodeURIComponent(ticket.url)}`;
    $('invite-link').value = link;
    $('invite-open').href = link;
    $('invite-open').hidden = false;
    $('invite-copy').disabled = false;
  } catch (err) {
    $('invite-link').value = `no invite: ${err.message}`;
  }
}

async function say(text) {
  const at = new Date().toISOString();
  const pending = line({
    key: `${timeKey(at)}~`,
    type: 'user_text',
    from: { identity: session.identity ?? '', kind: 'user' },
    at,
    who: 'You',
    text,
    system: false,
  });
  pending.dataset.delivery = 'sending';
  insertOrdered($('messages'), pending);
  try {
    const ack = await session.sendMessageAcked('user_text', { text });
    if (shown.has(ack.id)) {
      // the room's copy came first
      pending.remove();
      document
        .querySelector(`#messages [data-id="${CSS.escape(ack.id)}"]`)
        ?.setAttribute('data-delivery', 'saved');
      return;
    }
    shown.add(ack.id);
    pending.dataset.id = ack.id;
    pending.dataset.key = timeKey(ack.at) + ack.id;
    pending.dataset.delivery = ack.recorded ? 'saved' : 'sent';
    pending.querySelector('time').dateTime = ack.at;
    insertOrdered($('messages'), pending);
  } catch (err) {
    pending.dataset.delivery = 'failed';
    pending.querySelector('.text').textContent = `${text} — not sent (${err.code}: ${err.message})`;
  }
}

// ------------------------------------------------------------------ the transcript

async function loadTranscript(older) {
  if (!session) return;
  const list = $('transcript-list');
  const status = $('transcript-status');
  const includeDebug = $('transcript-debug').checked;
  $('transcript-older').disabled = true;
  status.textContent = 'Reading…';
  try {
    const page = await session.history({ limit: PAGE_SIZE, includeDebug, ...(older ? cursor : {}) });
    const lines = page.messages.map((m) => {
      const d = describe(m);
      const li = line({ key: timeKey(m.at) + m.id, id: m.id, ...m, ...d, who: d.who || '' });
      const type = document.createElement('code');
      type.className = 'type';
      type.textContent = m.type;
      li.prepend(type, ' ');
      return li;
    });
    if (older) list.prepend(...lines);
    else list.replaceChildren(...lines);
    cursor = page.hasMore ? { before: page.nextBefore, beforeId: page.nextBeforeId ?? undefined } : null;
    $('transcript-older').disabled = !page.hasMore;
    const kinds = includeDebug ? 'recorded messages, debug included' : 'recorded messages';
    status.textContent = `${list.children.length} ${kinds}, oldest first; ${
      page.hasMore ? '“Older” shows more' : 'this is the start of the session'
    }.`;
  } catch (err) {
    status.textContent = `Could not read the transcript: ${err.code}: ${err.message}`;
  }
}

// ------------------------------------------------------------------ wiring

$('say').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('say-text').value.trim();
  if (!text || !session) return;
  $('say-text').value = '';
  void say(text);
});
$('end').addEventListener('click', () => {
  $('end').disabled = true;
  session?.end().catch((err) => note(`Ending failed: ${err.message}`, 'error'));
});
$('start').addEventListener('click', () => {
  history.replaceState(null, '', location.pathname + location.search);
  $('join').hidden = true;
  void begin(() =>
    UsherSession.start({ server: location.origin, projectId: PROJECT, afk: { enabled: false } }),
  );
});
$('invite-copy').addEventListener('click', async () => {
  await navigator.clipboard?.writeText($('invite-link').value).catch(() => {});
  $('invite-link').select();
});
$('transcript-load').addEventListener('click', () => void loadTranscript(false));
$('transcript-older').addEventListener('click', () => void loadTranscript(true));
$('transcript-debug').addEventListener('change', () => void loadTranscript(false));

// an invite link (#invite=<the session's socket URL with a token>) asks for a name, then joins that chat; a
// plain visit starts a new one at once
const inviteUrl = new URLSearchParams(location.hash.slice(1)).get('invite');
if (inviteUrl) {
  $('join').hidden = false;
  $('join-name').focus();
  $('join').addEventListener('submit', (e) => {
    e.preventDefault();
    $('join-button').disabled = true;
    const identity = $('join-name').value.trim() || undefined;
    // the server is this page's origin: the socket URL may name the same server by another host name
    const join = { url: inviteUrl, server: location.origin, identity, afk: { enabled: false } };
    void begin(() => UsherSession.acceptInvite(join)).then(() => {
      $('join').hidden = session !== null;
      $('join-button').disabled = false;
    });
  });
} else {
  void begin(() =>
    UsherSession.start({ server: location.origin, projectId: PROJECT, afk: { enabled: false } }),
  );
}
