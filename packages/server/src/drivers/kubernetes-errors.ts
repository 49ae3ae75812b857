// Errors of the Kubernetes API turned into messages that say what to fix.
import { ApiException } from '@kubernetes/client-node';

/** The API verbs the driver uses. */
export type Verb = 'get' | 'list' | 'watch' | 'create' | 'delete';

/** An API call that failed, with a message that says what to fix. */
export class KubernetesApiError extends Error {
  override name = 'KubernetesApiError';
  /** the HTTP status, or null when the API could not be reached */
  readonly status: number | null;
  /** the Status reason (NotFound, AlreadyExists, Invalid, Forbidden, …) when the API gave one */
  readonly reason: string | null;
  constructor(message: string, status: number | null, reason: string | null, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.reason = reason;
  }
}

export interface CallContext {
  verb: Verb;
  resource: 'pods' | 'secrets';
  namespace: string;
  name: string | null;
  projectId: string | null;
  server: string;
}

interface Status {
  message?: string;
  reason?: string;
  details?: { causes?: { field?: string; message?: string }[] };
}

/** Turns what the client threw into a KubernetesApiError whose message says what to fix. */
export function describeApiError(err: unknown, c: CallContext): KubernetesApiError {
  const what = c.name ? `${c.resource.replace(/s$/, '')} "${c.name}"` : c.resource;
  const where = `namespace "${c.namespace}"`;
  if (!(err instanceof ApiException)) {
    const code = errorCode(err);
    return new KubernetesApiError(
      `cannot reach the Kubernetes API at ${c.server} to ${c.verb} ${what} in ${where}${code ? ` (${code})` : ''}: check kubernetes.kubeconfig (or, in a cluster, that Usher runs with kubernetes.inCluster and can reach the API)`,
      null,
      null,
      { cause: err },
    );
  }
  const status = parseStatus(err.body);
  const reason = status?.reason ?? null;
  const detail = status?.message ? `: ${status.message}` : '';
  let message: string;
  switch (err.code) {
    case 401:
      message = `the Kubernetes API at ${c.server} did not accept Usher's credentials (401 Unauthorized): check the user of kubernetes.kubeconfig, or the service account token when in the cluster`;
      break;
    case 403:
      message = `Usher may not ${c.verb} ${c.resource} in ${where} (403 Forbidden${detail}): grant "${c.verb}" on ${c.resource} to its service account in that namespace (the Role in deploy/kubernetes/rbac.yaml grants what the driver needs)`;
      break;
    case 404:
      // a create names its namespace's absence this way; a list or watch in a namespace that does not exist
      // answers 200 with nothing in it, so a 404 there is another trouble (a wrong server URL, a proxy)
      if (c.verb === 'create')
        message = `${where} does not exist (404 NotFound${detail}): create it, or fix kubernetes.namespace${c.projectId ? ` or worker.namespace of project "${c.projectId}"` : ''}`;
      else if (c.name) message = `${what} not found in ${where} (404 NotFound)`;
      else message = `${c.verb} ${what} in ${where} failed (404${reason ? ` ${reason}` : ''}${detail})`;
      break;
    case 409:
      message = `${what} already exists in ${where} (409 AlreadyExists${detail}): delete it, or give each Usher installation sharing the namespace its own kubernetes.installation`;
      break;
    case 422: {
      const causes = (status?.details?.causes ?? [])
        .map((x) => [x.field, x.message].filter(Boolean).join(': '))
        .filter(Boolean);
      message = `the Kubernetes API rejected the worker's ${c.resource.replace(/s$/, '')}${c.projectId ? ` of project "${c.projectId}"` : ''} (422 Invalid${causes.length ? `: ${causes.join('; ')}` : detail}): check worker.image, worker.command, worker.env, worker.resources, worker.nodeSelector and worker.tolerations`;
      break;
    }
    default:
      message = `${c.verb} ${what} in ${where} failed (${err.code}${reason ? ` ${reason}` : ''}${detail})`;
  }
  return new KubernetesApiError(message, err.code, reason, { cause: err });
}

function parseStatus(body: unknown): Status | null {
  if (typeof body === 'object' && body !== null) return body as Status;
  if (typeof body !== 'string' || !body) return null;
  try {
    const parsed = JSON.parse(body) as unknown;
    return typeof parsed === 'object' && parsed !== null ? (parsed as Status) : null;
  } catch {
    return null;
  }
}

function errorCode(err: unknown): string | null {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return err instanceof Error ? err.message : null;
}

/**
 * Whether a write that failed may still have been carried out: no answer came (the connection failed or was
 * reset), or a server error did (500, a gateway's 502 or 504 after the API server committed). A 4xx is a
 * refusal: nothing was written.
 */
export function mayHaveApplied(err: unknown): boolean {
  if (!(err instanceof KubernetesApiError)) return true;
  return err.status === null || err.status >= 500;
}

export function isAbort(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'AbortError';
}

/** The client's own inactivity timeout: the watch is renewed, as after the server ended it. */
export function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'TimeoutError';
}

export function describeWatchError(err: unknown, server: string, namespace: string): string {
  const status = (err as { statusCode?: number }).statusCode;
  if (status === 403)
    return `Usher may not watch pods in namespace "${namespace}" (403 Forbidden): grant "watch" on pods to its service account`;
  if (status === 401) return `the Kubernetes API at ${server} did not accept Usher's credentials (401)`;
  if (status) return `watching pods in namespace "${namespace}" failed with HTTP ${status}`;
  return `cannot reach the Kubernetes API at ${server} (${errorCode(err) ?? 'unknown error'})`;
}
