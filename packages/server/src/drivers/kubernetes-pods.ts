// A worker's pod and what Usher reads from it: the project's worker spec, names and labels, the handle, and the
// pod status turned into a worker exit. No API calls here.
import type { V1ContainerStatus, V1Pod, V1ResourceRequirements, V1Toleration } from '@kubernetes/client-node';
import { handleFields, type WorkerExit } from './driver.ts';

/** Labels (and annotations, which keep the exact values) on every pod and secret of a worker. */
export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  component: 'app.kubernetes.io/component',
  installation: 'usher/installation',
  project: 'usher/project',
  region: 'usher/region',
  worker: 'usher/worker',
  session: 'usher/session',
} as const;
export const MANAGED_BY = 'usher';
/** The name of the worker's container in its pod. */
export const CONTAINER_NAME = 'worker';

/** What start() returns as the handle (as JSON): where the worker's pod is. */
export interface KubernetesHandle {
  namespace: string;
  pod: string;
}

/** container waiting reasons that will not get better by waiting: the start failed */
const FATAL_WAITING = new Set(['InvalidImageName', 'ErrImageNeverPull']);
/** a failed pull, which the kubelet tries again (with a back-off): fatal only when the registry said no for good */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff']);
/** what registries answer for an image that is not there, or not for these credentials */
const PULL_REFUSED = /not found|manifest unknown|unauthorized|denied|forbidden/i;
/** a registry that throttles (429) will let the pull through later, whatever else its message says */
const PULL_THROTTLED = /too ?many ?requests|rate limit/i;
const RESOURCE_KEYS = ['limits', 'requests'];
const TOLERATION_KEYS = ['key', 'operator', 'value', 'effect', 'tolerationSeconds'];

// ------------------------------------------------------------------ the project's worker spec

export interface KubernetesSpec {
  image: string;
  command: string[] | undefined;
  namespace: string | undefined;
  resources: V1ResourceRequirements | undefined;
  nodeSelector: Record<string, string> | undefined;
  tolerations: V1Toleration[] | undefined;
  env: Record<string, string>;
}

/** Checks what the driver needs of a project's `worker` (the API validates the rest: 422 names the field). */
export function readSpec(spec: Record<string, unknown>): KubernetesSpec {
  const { image, command, namespace, resources, nodeSelector, tolerations, env } = spec;
  if (typeof image !== 'string' || image.trim() === '')
    throw new TypeError('worker.image must name a container image (e.g. registry.example.com/agent:1.2)');
  if (command !== undefined && (!Array.isArray(command) || !command.every((a) => typeof a === 'string')))
    throw new TypeError('worker.command must be an array of strings (the container command)');
  if (namespace !== undefined && typeof namespace !== 'string')
    throw new TypeError('worker.namespace must be a string');
  const stringMap = (value: unknown, key: string): Record<string, string> | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new TypeError(`${key} must be an object of strings`);
    for (const [k, v] of Object.entries(value))
      if (typeof v !== 'string') throw new TypeError(`${key}.${k} must be a string`);
    return value as Record<string, string>;
  };
  let res: V1ResourceRequirements | undefined;
  if (resources !== undefined) {
    if (typeof resources !== 'object' || resources === null || Array.isArray(resources))
      throw new TypeError('worker.resources must be an object with limits and/or requests');
    res = {};
    for (const [k, v] of Object.entries(resources)) {
      if (!RESOURCE_KEYS.includes(k))
        throw new TypeError(`worker.resources.${k} is not known (known: ${RESOURCE_KEYS.join(', ')})`);
      res[k as 'limits' | 'requests'] = stringMap(v, `worker.resources.${k}`);
    }
  }
  let tols: V1Toleration[] | undefined;
  if (tolerations !== undefined) {
    if (!Array.isArray(tolerations)) throw new TypeError('worker.tolerations must be an array');
    tols = tolerations.map((t, i) => {
      if (typeof t !== 'object' || t === null || Array.isArray(t))
        throw new TypeError(`worker.tolerations[${i}] must be an object`);
      for (const k of Object.keys(t))
        if (!TOLERATION_KEYS.includes(k))
          throw new TypeError(
            `worker.tolerations[${i}].${k} is not a toleration field (known: ${TOLERATION_KEYS.join(', ')})`,
          );
      return t as V1Toleration;
    });
  }
  return {
    image: image.trim(),
    command: command as string[] | undefined,
    namespace,
    resources: res,
    nodeSelector: stringMap(nodeSelector, 'worker.nodeSelector'),
    tolerations: tols,
    env: stringMap(env, 'worker.env') ?? {},
  };
}

/**
 * `${USHER_…}` in a command argument becomes Kubernetes' own `$(USHER_…)`, which the kubelet expands from the
 * container's environment (the secret): the credentials never appear in the pod spec.
 */
export function toKubernetesVars(arg: string): string {
  return arg.replace(/\$\{(USHER_[A-Z0-9_]+)\}/g, '$($1)');
}

// ------------------------------------------------------------------ names, labels, handles

/** The pod (and secret) name of a worker: `usher-` + its id as a DNS label. */
export function podName(workerId: string): string {
  const base = `usher-${workerId.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}`.replace(/-+$/, '');
  if (base.length <= 63 && base === `usher-${workerId.replaceAll('_', '-')}`) return base;
  return `${base.slice(0, 54).replace(/-+$/, '')}-${shortHash(workerId)}`;
}

const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** A label value for an id: itself when Kubernetes accepts it, or a shortened one with a hash. */
export function labelValue(value: string): string {
  if (LABEL_VALUE.test(value)) return value;
  const cleaned = value
    .replace(/[^-A-Za-z0-9_.]+/g, '-')
    .slice(0, 54)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return cleaned ? `${cleaned}-${shortHash(value)}` : shortHash(value);
}

function shortHash(value: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export function encodeHandle(handle: KubernetesHandle): string {
  return JSON.stringify(handle);
}

export function decodeHandle(handle: string): KubernetesHandle | null {
  const fields = handleFields(handle);
  if (!fields) return null;
  const { namespace, pod } = fields;
  if (typeof namespace !== 'string' || typeof pod !== 'string' || !namespace || !pod) return null;
  return { namespace, pod };
}

/** ws(s)://public/…/workers/ws?x → ws(s)://<usherUrl>/workers/ws?x: the same endpoint at another address. */
export function rebaseUrl(url: string, usherUrl: string): string {
  const u = new URL(url);
  const base = new URL(usherUrl);
  const at = u.pathname.lastIndexOf('/workers/');
  const tail = at >= 0 ? u.pathname.slice(at) : u.pathname;
  const protocol = base.protocol === 'https:' || base.protocol === 'wss:' ? 'wss:' : 'ws:';
  return `${protocol}//${base.host}${base.pathname.replace(/\/+$/, '')}${tail}${u.search}`;
}

// ------------------------------------------------------------------ pod status → exit

/** What exitOf needs to know of the worker a pod runs. */
export interface PodView {
  workerId: string;
  /** Usher asked for the exit (stop, reap, close) */
  expected: boolean;
  /** stop() is deleting the pod */
  deleting: boolean;
  /** why the pod is being disrupted (its DisruptionTarget condition), if it is */
  disruption: string | null;
}

/**
 * Whether a waiting container will never start: an image name that cannot be one, an image that may not be
 * pulled, or a pull the registry refused for good (not found, manifest unknown, unauthorized, denied,
 * forbidden). Any other pull failure (throttling, a registry or network hiccup) is waited out: the kubelet tries
 * again, and the engine's connecting timeout bounds the wait.
 */
export function cannotStart(waiting: { reason?: string; message?: string } | undefined): boolean {
  const reason = waiting?.reason;
  if (!reason) return false;
  if (FATAL_WAITING.has(reason)) return true;
  if (!PULL_FAILURES.has(reason)) return false;
  const message = waiting.message ?? '';
  return PULL_REFUSED.test(message) && !PULL_THROTTLED.test(message);
}

export function workerContainer(pod: V1Pod): V1ContainerStatus | undefined {
  const statuses = pod.status?.containerStatuses ?? [];
  return statuses.find((c) => c.name === CONTAINER_NAME) ?? statuses[0];
}

/** The exit of a pod in its last known state; `error` says why it failed, when it did. */
export function exitOf(w: PodView, pod: V1Pod, phase: string | undefined): WorkerExit {
  const terminated = workerContainer(pod)?.state?.terminated;
  const exit: WorkerExit = {
    workerId: w.workerId,
    code: terminated?.exitCode ?? null,
    signal: null,
    expected: w.expected,
  };
  if (phase !== 'Failed') {
    // a container that stopped cleanly because someone else took its pod away did not end on its own
    if (w.disruption) exit.error = `the worker pod was evicted (${w.disruption})`;
    else if (pod.metadata?.deletionTimestamp && !w.deleting)
      exit.error = 'the worker pod was deleted, not by Usher';
    return exit;
  }
  const limit = pod.spec?.containers?.[0]?.resources?.limits?.memory;
  if (pod.status?.reason === 'Evicted') {
    exit.error = `the worker pod was evicted from its node${pod.status.message ? `: ${pod.status.message}` : ''}`;
  } else if (terminated?.reason === 'OOMKilled') {
    exit.error = `the worker ran out of memory (OOMKilled${limit ? `, limit ${limit}` : ''}); raise worker.resources.limits.memory`;
  } else if (w.disruption) {
    exit.error = `the worker pod was evicted (${w.disruption})`;
  } else if (pod.metadata?.deletionTimestamp && !w.deleting) {
    // a container stopped for a deletion usually ends with SIGTERM's 143, and its pod goes Failed before it disappears
    exit.error = 'the worker pod was deleted, not by Usher';
  } else if (terminated) {
    exit.error = `the worker container exited with code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''}`;
  } else {
    const why = [pod.status?.reason, pod.status?.message].filter(Boolean).join(': ');
    exit.error = `the worker pod failed${why ? ` (${why})` : ''}`;
  }
  return exit;
}
