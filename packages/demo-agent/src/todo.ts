// What the demo agent says: a tiny command language over a to-do list. Pure, so it is tested without a server.

export interface TodoItem {
  text: string;
  done: boolean;
}

export interface Reply {
  /** the agent's answer (`agent_text`) */
  text: string;
  /** the list after the command, when it changed (`complete_todo_list`) */
  todos?: TodoItem[];
}

export const HELP =
  'I keep a to-do list for this room. Say "add <something>", "done <number>", "list" or "clear"; anything else I repeat.';

/** Answers one `user_text` from `who`, given the list so far. */
export function answer(text: string, who: string, todos: readonly TodoItem[]): Reply {
  const t = text.trim();
  const [word = '', ...rest] = t.split(/\s+/);
  const arg = rest.join(' ');
  switch (word.toLowerCase()) {
    case 'help':
      return { text: HELP };
    case 'add': {
      if (!arg) return { text: 'Add what? Say "add buy milk".' };
      const next = [...todos, { text: arg, done: false }];
      return { text: `Added #${next.length}: ${arg} (for ${who}).`, todos: next };
    }
    case 'done': {
      const n = Number(arg);
      if (!Number.isInteger(n) || n < 1 || n > todos.length)
        return { text: `Which one? Say "done 1" to "done ${Math.max(1, todos.length)}".` };
      const next = todos.map((item, i) => (i === n - 1 ? { ...item, done: true } : item));
      return { text: `Done: ${todos[n - 1]!.text}.`, todos: next };
    }
    case 'list':
      return {
        text:
          todos.length === 0
            ? 'The list is empty.'
            : todos.map((item, i) => `${i + 1}. [${item.done ? 'x' : ' '}] ${item.text}`).join('\n'),
      };
    case 'clear':
      return { text: 'Cleared the list.', todos: [] };
    default:
      return { text: t ? `${who} said: ${t}` : HELP };
  }
}

/** The list a previous worker saved (auto-restart), or an empty one. */
export function restoredTodos(savedState: unknown): TodoItem[] {
  const todos = (savedState as { todos?: unknown } | null)?.todos;
  if (!Array.isArray(todos)) return [];
  return todos.filter(
    (t): t is TodoItem =>
      typeof t === 'object' && t !== null && typeof t.text === 'string' && typeof t.done === 'boolean',
  );
}
