// The demo agent: an UsherWorker that greets the room, answers `user_text` with `agent_text`, and sends its
// to-do list as `complete_todo_list` whenever it changes. It saves the list, so an auto-restarted session
// carries on where the crashed worker left off.
import type { Assignment, Envelope, Participant } from '@usher/protocol';
import { UsherWorker, type WorkerOptions } from '@usher/worker';
import { answer, HELP, restoredTodos, type TodoItem } from './todo.ts';

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
    const back =
      assignment.restarts > 0 ? ` I am back after a restart; the list has ${this.#todos.length} items.` : '';
    this.send('agent_text', { text: `Hello! ${HELP}${back}` });
    if (this.#todos.length > 0) this.send('complete_todo_list', { items: this.#todos });
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
  }

  override onShutdown(): void {
    this.saveState({ todos: this.#todos });
  }
}
