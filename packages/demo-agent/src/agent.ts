// The demo agent: an UsherWorker that greets the room, answers `user_text` with `agent_text`, and sends its
// to-do list as `complete_todo_list` whenever it changes, and notes what it did as `debug` (recorded, but left
// out of transcripts unless asked for). It saves the list, so an auto-restarted session carries on where the
// crashed worker left off.
import type { Assignment, Envelope, Participant } from '@usher/protocol';
import { UsherWorker, type WorkerOptions } from '@usher/worker';
import { answer, HELP, restoredTodos, type TodoItem } from './todo.ts';

/** After a restart: how much of the conversation the fresh agent got with its assignment. */
function heard(a: Assignment): string {
  const said = a.transcript?.messages.filter((m) => m.type === 'user_text' || m.type === 'agent_text');
  if (!said?.length) return '';
  return `, and I have read our last ${said.length} ${said.length === 1 ? 'message' : 'messages'}`;
}

export class DemoAgent extends UsherWorker {
  #todos: TodoItem[] = [];

  constructor(options: WorkerOptions = {}) {
    super({ name: 'demo-agent', ...options });
  }

  get todos(): readonly TodoItem[] {
    return this.#todos;
  }

  override onConnect(assignment: Assignment): void {
    this.#todos = restoredTodos(assignment.savedState);
    const n = this.#todos.length;
    const back =
      assignment.restarts > 0
        ? ` I am back after a restart; the list has ${n} ${n === 1 ? 'item' : 'items'}${heard(assignment)}.`
        : '';
    this.send('agent_text', { text: `Hello! ${HELP}${back}` });
    if (this.#todos.length > 0) this.send('complete_todo_list', { items: this.#todos });
    this.send('debug', {
      event: 'connect',
      pid: process.pid,
      restarts: assignment.restarts,
      items: this.#todos.length,
    });
  }

  override onParticipantJoined(p: Participant): void {
    if (p.kind === 'user' || p.kind === 'viewer')
      this.send('agent_text', { text: `Welcome, ${p.identity}.` });
  }

  override onMessage(envelope: Envelope): void {
    if (envelope.type !== 'user_text') return;
    const text = (envelope.data as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') {
      this.send('agent_text', { text: 'I read user_text messages shaped {"text": "…"}.' });
      return;
    }
    const reply = answer(text, envelope.from.identity, this.#todos);
    this.send('agent_text', { text: reply.text });
    if (reply.todos) {
      this.#todos = reply.todos;
      this.send('complete_todo_list', { items: this.#todos });
      this.saveState({ todos: this.#todos });
    }
    this.send('debug', {
      event: 'user_text',
      from: envelope.from.identity,
      changed: reply.todos !== undefined,
      items: this.#todos.length,
    });
  }

  override onShutdown(): void {
    this.saveState({ todos: this.#todos });
  }
}
