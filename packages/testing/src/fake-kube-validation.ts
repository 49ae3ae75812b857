// For FakeKubeApi: the API server's answers to bad requests — Status errors, label selectors, and the subset of
// object validation (422 with causes) that Usher's driver could trip over.
import type { KubeMeta, PodObject } from './fake-kube-api.ts';

/** An error the fake answers with, as a Status object. */
export class StatusError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

export interface Cause {
  field: string;
  reason: string;
  message: string;
}

// ------------------------------------------------------------------ label selectors

export type Selector = (labels: Record<string, string>) => boolean;

/** Parses a label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`); a bad one is 400 as from the real server. */
export function parseSelector(text: string | null): Selector {
  if (!text) return () => true;
  const parts = text.split(/,(?![^(]*\))/).map((p) => p.trim());
  const tests = parts.map((p): Selector => {
    let m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(p);
    if (m) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      return op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v;
    }
    m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p);
    if (m) {
      const [, k, op, list] = m as unknown as [string, string, string, string];
      const values = list.split(',').map((v) => v.trim());
      return op === 'in'
        ? (l) => l[k] !== undefined && values.includes(l[k])
        : (l) => l[k] === undefined || !values.includes(l[k]);
    }
    m = /^(!?)([A-Za-z0-9][-A-Za-z0-9_./]*)$/.exec(p);
    if (m) {
      const [, not, k] = m as unknown as [string, string, string];
      return not ? (l) => !(k in l) : (l) => k in l;
    }
    throw new StatusError(400, 'BadRequest', `unable to parse requirement: ${p}`);
  });
  return (labels) => tests.every((t) => t(labels));
}

// ------------------------------------------------------------------ validation (the rules the driver can break)

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const QUANTITY = /^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$/;

const SUBDOMAIN_MESSAGE =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE =
  "a DNS-1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const VALUE_MESSAGE =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const KEY_MESSAGE =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

export function invalid(kind: string, name: string, causes: Cause[]): StatusError {
  const list = causes.map((c) => `${c.field}: ${c.message}`);
  const message = `${kind} "${name}" is invalid: ${list.length === 1 ? list[0] : `[${list.join(', ')}]`}`;
  return new StatusError(422, 'Invalid', message, { name, kind, causes });
}

const required = (field: string, detail = ''): Cause => ({
  field,
  reason: 'FieldValueRequired',
  message: `Required value${detail ? `: ${detail}` : ''}`,
});
const badValue = (field: string, value: unknown, detail: string): Cause => ({
  field,
  reason: 'FieldValueInvalid',
  message: `Invalid value: ${JSON.stringify(value)}: ${detail}`,
});
const unsupported = (field: string, value: unknown, supported: string[]): Cause => ({
  field,
  reason: 'FieldValueNotSupported',
  message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported.map((s) => `"${s}"`).join(', ')}`,
});

function validateMeta(input: Record<string, unknown>, name: string): Cause[] {
  const causes: Cause[] = [];
  const meta = (input.metadata ?? {}) as Partial<KubeMeta>;
  if (!name) causes.push(required('metadata.name', 'name or generateName is required'));
  else if (name.length > 253 || !DNS_SUBDOMAIN.test(name))
    causes.push(badValue('metadata.name', name, SUBDOMAIN_MESSAGE));
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    causes.push(...validateKey('metadata.labels', k));
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      causes.push(badValue('metadata.labels', v, VALUE_MESSAGE));
  }
  for (const k of Object.keys(meta.annotations ?? {})) causes.push(...validateKey('metadata.annotations', k));
  (meta.ownerReferences ?? []).forEach((r, i) => {
    for (const f of ['apiVersion', 'kind', 'name', 'uid'] as const)
      if (!r[f]) causes.push(required(`metadata.ownerReferences[${i}].${f}`));
  });
  return causes;
}

function validateKey(field: string, k: string): Cause[] {
  const slash = k.lastIndexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : null;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  const causes: Cause[] = [];
  if (prefix !== null && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)))
    causes.push(badValue(field, k, `prefix part ${SUBDOMAIN_MESSAGE}`));
  if (!name || name.length > 63 || !QUALIFIED_NAME.test(name)) causes.push(badValue(field, k, KEY_MESSAGE));
  return causes;
}

export function validatePod(input: Record<string, unknown>, name: string): Cause[] {
  const causes = validateMeta(input, name);
  const spec = input.spec as PodObject['spec'] | undefined;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    causes.push(required('spec.containers'));
    return causes;
  }
  if (spec.restartPolicy !== undefined && !['Always', 'OnFailure', 'Never'].includes(spec.restartPolicy))
    causes.push(unsupported('spec.restartPolicy', spec.restartPolicy, ['Always', 'OnFailure', 'Never']));
  const names = new Set<string>();
  spec.containers.forEach((c, i) => {
    const at = `spec.containers[${i}]`;
    if (!c.name) causes.push(required(`${at}.name`));
    else if (c.name.length > 63 || !DNS_LABEL.test(c.name))
      causes.push(badValue(`${at}.name`, c.name, LABEL_MESSAGE));
    else if (names.has(c.name))
      causes.push({
        field: `${at}.name`,
        reason: 'FieldValueDuplicate',
        message: `Duplicate value: "${c.name}"`,
      });
    names.add(c.name);
    if (!c.image || typeof c.image !== 'string' || c.image.trim() !== c.image)
      causes.push(required(`${at}.image`));
    (c.env ?? []).forEach((e, j) => {
      if (!e.name) causes.push(required(`${at}.env[${j}].name`));
      else if (!ENV_NAME.test(e.name))
        causes.push(
          badValue(
            `${at}.env[${j}].name`,
            e.name,
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
          ),
        );
    });
    (c.envFrom ?? []).forEach((e, j) => {
      if (e.secretRef && !e.secretRef.name) causes.push(required(`${at}.envFrom[${j}].secretRef.name`));
    });
    const resources = c.resources ?? {};
    for (const kind of ['limits', 'requests'] as const)
      for (const [k, v] of Object.entries(resources[kind] ?? {}))
        if (typeof v !== 'string' || !QUANTITY.test(v) || parseQuantity(v) < 0)
          causes.push(
            badValue(
              `${at}.resources.${kind}[${k}]`,
              v,
              "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
          );
    for (const [k, req] of Object.entries(resources.requests ?? {})) {
      const limit = resources.limits?.[k];
      if (
        limit !== undefined &&
        QUANTITY.test(req) &&
        QUANTITY.test(limit) &&
        parseQuantity(req) > parseQuantity(limit)
      )
        causes.push(
          badValue(`${at}.resources.requests`, req, `must be less than or equal to ${k} limit of ${limit}`),
        );
    }
  });
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) {
    causes.push(...validateKey('spec.nodeSelector', k));
    if (typeof v !== 'string' || !LABEL_VALUE.test(v))
      causes.push(badValue('spec.nodeSelector', v, VALUE_MESSAGE));
  }
  (spec.tolerations ?? []).forEach((t, i) => {
    const at = `spec.tolerations[${i}]`;
    const op = t.operator ?? 'Equal';
    if (!['Equal', 'Exists'].includes(op))
      causes.push(unsupported(`${at}.operator`, op, ['Equal', 'Exists']));
    if (op === 'Exists' && t.value)
      causes.push(badValue(`${at}.operator`, t.value, "value must be empty when `operator` is 'Exists'"));
    if (!t.key && op !== 'Exists')
      causes.push(
        badValue(
          `${at}.operator`,
          op,
          'operator must be Exists when `key` is empty, which means "match all values and all keys"',
        ),
      );
    if (t.effect && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(t.effect))
      causes.push(unsupported(`${at}.effect`, t.effect, ['NoExecute', 'NoSchedule', 'PreferNoSchedule']));
    if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute')
      causes.push(
        badValue(
          `${at}.effect`,
          t.effect ?? '',
          "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ),
      );
  });
  return causes;
}

export function validateSecret(input: Record<string, unknown>, name: string): Cause[] {
  const causes = validateMeta(input, name);
  const data = (input.data ?? {}) as Record<string, unknown>;
  const stringData = (input.stringData ?? {}) as Record<string, unknown>;
  for (const [k, v] of [...Object.entries(data), ...Object.entries(stringData)]) {
    if (!CONFIG_KEY.test(k))
      causes.push(
        badValue(
          `data[${k}]`,
          k,
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        ),
      );
    if (typeof v !== 'string') causes.push(badValue(`data[${k}]`, v, 'must be a string'));
  }
  for (const [k, v] of Object.entries(data))
    if (typeof v === 'string' && !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
      throw new StatusError(400, 'BadRequest', `illegal base64 data in data[${k}]`);
  return causes;
}

/** A resource quantity as a number (enough to compare requests with limits). */
function parseQuantity(q: string): number {
  const m = QUANTITY.exec(q);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  const suffix = m[2] ?? '';
  const binary: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    Ei: 2 ** 60,
  };
  const decimal: Record<string, number> = {
    n: 1e-9,
    u: 1e-6,
    m: 1e-3,
    '': 1,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
    E: 1e18,
  };
  if (suffix in binary) return n * binary[suffix]!;
  if (suffix in decimal) return n * decimal[suffix]!;
  return n * 10 ** Number(suffix.slice(1));
}
