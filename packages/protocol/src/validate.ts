// Runtime validation of the protocol's schemas, with one readable message per failure.
import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';

export interface Validator<T extends TSchema> {
  /** Returns the value typed, or an error message naming the first offending path. */
  parse(value: unknown): { ok: true; value: Static<T> } | { ok: false; message: string };
}

export function validator<T extends TSchema>(schema: T): Validator<T> {
  const compiled = Compile(schema);
  const byType = messageTypes(schema);
  return {
    parse(value) {
      if (compiled.Check(value)) return { ok: true, value: value as Static<T> };
      // a message of a known type is described against that type's schema, not against the whole union
      const type = (value as { type?: unknown } | null)?.type;
      const member = typeof type === 'string' ? byType.get(type) : undefined;
      if (member) return { ok: false, message: `${type}: ${describeErrors(member.Errors(value))}` };
      if (byType.size > 0 && typeof type === 'string')
        return { ok: false, message: `unknown message type "${type.slice(0, 64)}"` };
      return { ok: false, message: describeErrors(compiled.Errors(value)) };
    },
  };
}

/** For a union of `{type: <literal>, …}` objects (nested unions too): each type's schema, compiled once. */
function messageTypes(schema: TSchema): Map<string, ReturnType<typeof Compile>> {
  const out = new Map<string, ReturnType<typeof Compile>>();
  const visit = (s: TSchema) => {
    const anyOf = (s as { anyOf?: TSchema[] }).anyOf;
    if (anyOf) return anyOf.forEach(visit);
    const literal = (s as { properties?: { type?: { const?: unknown } } }).properties?.type?.const;
    if (typeof literal === 'string' && !out.has(literal)) out.set(literal, Compile(s));
  };
  visit(schema);
  return out;
}

interface SchemaError {
  instancePath: string;
  message: string;
  keyword: string;
  params: unknown;
}

function describeErrors(errors: Iterable<unknown>): string {
  const list = [...errors] as SchemaError[];
  const addl = list.find((e) => e.keyword === 'additionalProperties');
  if (addl) {
    const names = (addl.params as { additionalProperties?: string[] }).additionalProperties ?? [];
    return `${addl.instancePath || 'body'} has unknown field${names.length > 1 ? 's' : ''} ${names.map((n) => `"${n}"`).join(', ')}`;
  }
  // a union's "must match a schema in anyOf" hides the useful inner message, so prefer the deepest path
  const first = [...list].sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
  if (!first) return 'invalid value';
  return `${first.instancePath || 'value'} ${first.message}`;
}
