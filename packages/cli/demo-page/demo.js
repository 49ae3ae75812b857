// The demo page: one viewer per tab, on the `demo` streaming project, through the Web SDK.
import { UsherSession } from '/sdk/usher.js';

const $ = (id) => document.getElementById(id);
const video = $('video');
const overlay = $('overlay');
let session = null;

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
}

function show(message) {
  overlay.hidden = !message;
  overlay.textContent = message ?? '';
}

function setState(state) {
  $('state').textContent = state;
  $('state').dataset.state = state;
}

const seconds = (ms) => Math.max(0, Math.ceil(ms / 1000));

async function start() {
  $('start').disabled = true;
  $('ended').textContent = '—';
  $('queue').textContent = '—';
  setState('requesting');
  show('Asking for a seat…');
  try {
    session = await UsherSession.start({ server: location.origin, projectId: 'demo', video });
  } catch (err) {
    setState('ended');
    $('ended').textContent = `${err.code}: ${err.message}`;
    show(`Could not start: ${err.message}`);
    $('start').disabled = false;
    return;
  }
  window.usherSession = session;
  $('session-id').textContent = session.id;
  $('leave').disabled = false;
  setState(session.state);
  log(`session ${session.id} (${session.state})`);

  session.on('state', ({ state, cause }) => {
    setState(state);
    log(`state ${state} (${cause})`);
    if (state === 'connecting') show('Seated: starting the stream…');
    if (state !== 'queued') $('queue').textContent = '—';
  });
  session.on('queue', ({ position, queueLength, estimatedWaitMs }) => {
    const eta = estimatedWaitMs === null ? '' : `, about ${seconds(estimatedWaitMs)} s`;
    $('queue').textContent = `number ${position} of ${queueLength}${eta}`;
    show(`All workers are busy. You are number ${position} in line${eta}.`);
  });
  session.on('stream', () => {
    show(null);
    $('echo-send').disabled = false;
    log('video started');
  });
  session.on('afkWarning', ({ remainingMs }) => {
    $('afk').hidden = false;
    $('afk-seconds').textContent = seconds(remainingMs);
    log('AFK warning');
  });
  session.on('afkCountdown', ({ remainingMs }) => {
    $('afk-seconds').textContent = seconds(remainingMs);
  });
  session.on('afkDismissed', ({ by }) => {
    $('afk').hidden = true;
    log(`AFK warning dismissed (${by})`);
  });
  session.on('dataChannelMessage', (data) => {
    log(`echo from the worker: ${typeof data === 'string' ? data : `${data.byteLength} bytes`}`);
  });
  session.on('error', ({ code, message }) => log(`error ${code}: ${message}`));
  session.on('reconnecting', ({ attempt, delayMs, code }) => {
    show(`Connection lost (${code}); reconnecting, attempt ${attempt}…`);
    log(`reconnecting: attempt ${attempt} in ${delayMs} ms after ${code}`);
  });
  session.on('reconnected', ({ sessionId, fresh }) => {
    $('session-id').textContent = sessionId;
    log(fresh ? `reconnected on a fresh session ${sessionId}` : 'reconnected to the same session');
  });
  session.on('ended', ({ code, reason, outcome }) => {
    setState('ended');
    $('afk').hidden = true;
    $('ended').textContent = `${code} ${reason} (${outcome})`;
    show(`Session ended: ${reason} (close code ${code})`);
    log(`ended ${code} ${reason}`);
    $('leave').disabled = true;
    $('echo-send').disabled = true;
    $('start').disabled = false;
    video.srcObject = null;
  });
}

$('start').addEventListener('click', start);
$('leave').addEventListener('click', () => session?.leave());
$('echo').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('echo-text').value;
  if (session?.sendInput(text)) log(`sent: ${text}`);
});
// a viewer who opens the page wants to watch: start at once (the Start button starts again after an end)
start();
