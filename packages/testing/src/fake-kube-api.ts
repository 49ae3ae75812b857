// For tests: an in-process fake of the Kubernetes API server, real HTTP on 127.0.0.1, for what Usher's
// Kubernetes driver uses: pods and secrets in namespaces (create, get, list, watch, delete), a resourceVersion on
// every change, watch streams of newline-delimited events with 410 Expired for a compacted resourceVersion, Status
// errors as the real server sends them (401, 403 from RBAC rules, 404, 409, 422 with causes), injected failures
// (before or after the request is carried out, or a dropped connection), graceful deletion and garbage collection
// through ownerReferences. Tests play the scheduler and the kubelet: they move pods through their phases.
// docs/kubernetes.md lists what it does not cover.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  invalid,
  parseSelector,
  type Selector,
  StatusError,
  validatePod,
  validateSecret,
} from './fake-kube-validation.ts';

export type KubeResource = 'pods' | 'secrets';
export type KubeVerb = 'get' | 'list' | 'watch' | 'create' | 'delete';
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface KubeMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  generateName?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
}

export interface ContainerState {
  waiting?: { reason?: string; message?: string };
  running?: { startedAt: string };
  terminated?: {
    exitCode: number;
    reason?: string;
    message?: string;
    startedAt?: string;
    finishedAt: string;
  };
}

export interface ContainerStatus {
  name: string;
  image: string;
  imageID: string;
  ready: boolean;
  started: boolean;
  restartCount: number;
  state: ContainerState;
}

export interface PodCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime: string;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { secretRef?: { name?: string }; configMapRef?: { name?: string } }[];
  resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
  imagePullPolicy?: string;
  [key: string]: unknown;
}

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

export interface PodObject {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: KubeMeta;
  spec: {
    containers: Container[];
    restartPolicy?: string;
    nodeName?: string;
    nodeSelector?: Record<string, string>;
    tolerations?: Toleration[];
    terminationGracePeriodSeconds?: number;
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    imagePullSecrets?: { name: string }[];
    [key: string]: unknown;
  };
  status: {
    phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
    reason?: string;
    message?: string;
    conditions?: PodCondition[];
    containerStatuses?: ContainerStatus[];
    startTime?: string;
    hostIP?: string;
    podIP?: string;
    qosClass?: string;
  };
}

export interface SecretObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: KubeMeta;
  type: string;
  immutable?: boolean;
  data?: Record<string, string>;
}

export type KubeObject = PodObject | SecretObject;

/** One change of the store, as a watch sends it. */
export interface KubeChange {
  type: WatchEventType;
  resource: KubeResource;
  resourceVersion: number;
  object: KubeObject;
}

/** One request the fake answered. */
export interface KubeRequest {
  verb: KubeVerb | 'unknown';
  resource: KubeResource | null;
  namespace: string | null;
  name: string | null;
  /** the HTTP status of the answer (200 for a watch) */
  status: number;
  query: Record<string, string>;
}

export interface FakeKubeApiOptions {
  /** the bearer token it accepts (default `fake-token`); anything else gets 401 */
  token?: string;
  /** namespaces that exist (default `default`); creating in another one is 404, a list or watch there is empty */
  namespaces?: readonly string[];
  /** RBAC: the verbs allowed on each resource; default everything. Others get 403 as from the real authorizer. */
  allow?: Partial<Record<KubeResource, readonly KubeVerb[]>>;
  /** the user named in 403 messages */
  user?: string;
  /**
   * What happens to a pod deleted with a grace period: `auto`, the kubelet stops its container at once (with
   * stopExitCode) and the pod goes; `manual`, it stays terminating until the test calls finishTermination() or
   * it is force-deleted (a node that does not answer).
   */
  kubelet?: 'auto' | 'manual';
  /**
   * The exit code of a container the kubelet stops for a deletion (the automatic kubelet, and finishTermination
   * by default): 0 (default), a program that handles SIGTERM and exits cleanly; 143, one that SIGTERM kills —
   * its pod goes Failed before it disappears, as on a real cluster.
   */
  stopExitCode?: number;
}

/** How an injected failure answers: an HTTP status (a Status body), or `reset`: the connection is dropped. */
export type InjectedAnswer = number | 'reset';

export interface FailNextOptions {
  /**
   * The request is carried out first (the object created or deleted, its watch events sent), and only its answer
   * fails: an API server that committed and then answered 500 or 504, or whose connection dropped. Default
   * false: the request is refused before anything is stored.
   */
  committed?: boolean;
}

interface Watcher {
  readonly namespace: string;
  readonly resource: KubeResource;
  readonly selector: Selector;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  timer: NodeJS.Timeout | null;
}

interface InjectedFailure {
  verb: KubeVerb;
  resource: KubeResource;
  answer: InjectedAnswer;
  message: string;
  committed: boolean;
}

const KINDS: Record<KubeResource, 'Pod' | 'Secret'> = { pods: 'Pod', secrets: 'Secret' };

export class FakeKubeApi {
  readonly token: string;
  readonly user: string;
  readonly kubelet: 'auto' | 'manual';
  readonly stopExitCode: number;
  /** every request answered, in order (status 0: the connection was dropped) */
  readonly requests: KubeRequest[] = [];
  readonly #namespaces: Set<string>;
  readonly #allow: Partial<Record<KubeResource, readonly KubeVerb[]>> | undefined;
  readonly #objects = new Map<string, KubeObject>();
  readonly #history: KubeChange[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly #changeListeners = new Set<(change: KubeChange) => void>();
  readonly #watchListeners = new Set<() => void>();
  readonly #failures: InjectedFailure[] = [];
  readonly #timers = new Set<NodeJS.Immediate>();
  #server: Server | null = null;
  #rv = 0;
  /** a watch from a resourceVersion below this one is answered 410 Expired */
  #compactedRv = 0;
  #url = '';

  constructor(options: FakeKubeApiOptions = {}) {
    this.token = options.token ?? 'fake-token';
    this.user = options.user ?? 'system:serviceaccount:usher:usher';
    this.kubelet = options.kubelet ?? 'auto';
    this.stopExitCode = options.stopExitCode ?? 0;
    this.#namespaces = new Set(options.namespaces ?? ['default']);
    this.#allow = options.allow;
  }

  /** http://127.0.0.1:port (after start()). */
  get url(): string {
    if (!this.#url) throw new Error('FakeKubeApi: call start() first');
    return this.#url;
  }

  /** The current resourceVersion of the store. */
  get resourceVersion(): number {
    return this.#rv;
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => void this.#handle(req, res));
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearImmediate(t);
    this.#timers.clear();
    this.dropWatches();
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * A kubeconfig file's content that points here, as JSON (which is YAML too): write it to a file for
   * `kubernetes.kubeconfig`, or give it to KubeConfig.loadFromString().
   */
  kubeconfig(namespace = 'default', token = this.token): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // plain HTTP on loopback: the client accepts http:// only with TLS verification off
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'usher', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'usher', namespace } }],
      'current-context': 'fake',
    });
  }

  addNamespace(namespace: string): void {
    this.#namespaces.add(namespace);
  }

  // ------------------------------------------------------------------ reading the store

  get<T extends KubeResource>(
    resource: T,
    namespace: string,
    name: string,
  ): (T extends 'pods' ? PodObject : SecretObject) | undefined {
    const o = this.#objects.get(key(resource, namespace, name));
    return o ? (structuredClone(o) as never) : undefined;
  }

  pod(namespace: string, name: string): PodObject | undefined {
    return this.get('pods', namespace, name);
  }

  secret(namespace: string, name: string): SecretObject | undefined {
    return this.get('secrets', namespace, name);
  }

  /** The objects of a resource (in one namespace, or all). */
  list<T extends KubeResource>(
    resource: T,
    namespace?: string,
  ): (T extends 'pods' ? PodObject : SecretObject)[] {
    return [...this.#objects.entries()]
      .filter(([k, o]) => k.startsWith(`${resource}/`) && (!namespace || o.metadata.namespace === namespace))
      .map(([, o]) => structuredClone(o) as never);
  }

  /** A secret's data, decoded. */
  secretData(namespace: string, name: string): Record<string, string> | undefined {
    const s = this.secret(namespace, name);
    if (!s) return undefined;
    return Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    );
  }

  /** Every change from now on. Returns a function that stops listening. */
  onChange(listener: (change: KubeChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Resolves with the next change that satisfies pred. */
  nextChange(pred: (change: KubeChange) => boolean = () => true): Promise<KubeChange> {
    return new Promise((resolve) => {
      const off = this.onChange((c) => {
        if (!pred(c)) return;
        off();
        resolve(c);
      });
    });
  }

  /** Resolves with the first object of a resource that satisfies pred: one there now, or the next one changed. */
  waitFor<T extends KubeResource>(
    resource: T,
    pred: (o: T extends 'pods' ? PodObject : SecretObject) => boolean,
  ): Promise<T extends 'pods' ? PodObject : SecretObject> {
    const now = this.list(resource).find((o) => pred(o));
    if (now) return Promise.resolve(now);
    return this.nextChange(
      (c) => c.type !== 'DELETED' && c.resource === resource && pred(structuredClone(c.object) as never),
    ).then((c) => structuredClone(c.object) as never);
  }

  /** Resolves once the object does not exist (at once when it does not). */
  async waitForGone(resource: KubeResource, namespace: string, name: string): Promise<void> {
    if (!this.#objects.has(key(resource, namespace, name))) return;
    await this.nextChange(
      (c) =>
        c.type === 'DELETED' &&
        c.resource === resource &&
        c.object.metadata.namespace === namespace &&
        c.object.metadata.name === name,
    );
  }

  /** Open watch streams (of a namespace, or all). */
  watchers(namespace?: string): number {
    return [...this.#watchers].filter((w) => !namespace || w.namespace === namespace).length;
  }

  /** Resolves once at least n watch streams are open (on a namespace, or in all). */
  async waitForWatchers(n: number, namespace?: string): Promise<void> {
    while (this.watchers(namespace) < n) {
      await new Promise<void>((resolve) => {
        const listener = () => {
          this.#watchListeners.delete(listener);
          resolve();
        };
        this.#watchListeners.add(listener);
      });
    }
  }

  // ------------------------------------------------------------------ what tests drive

  /**
   * Creates an object directly (no HTTP, no RBAC), validated as an API request would be: something that was
   * there before the test (a pod keeps the status it is given).
   */
  seed<T extends KubeObject>(object: Omit<T, 'metadata'> & { metadata: Partial<KubeMeta> }): T {
    const resource: KubeResource = object.kind === 'Pod' ? 'pods' : 'secrets';
    const namespace = object.metadata.namespace ?? 'default';
    this.addNamespace(namespace);
    const input = structuredClone(object) as Record<string, unknown>;
    return this.#create(resource, namespace, input, { keepStatus: true }) as T;
  }

  /**
   * The next request of this verb on this resource fails with this status (e.g. 500, 409, 422), or with a dropped
   * connection (`reset`); with `committed`, only after it was carried out (see FailNextOptions).
   */
  failNext(
    verb: KubeVerb,
    resource: KubeResource,
    answer: InjectedAnswer,
    message = 'injected failure',
    options: FailNextOptions = {},
  ): void {
    this.#failures.push({ verb, resource, answer, message, committed: options.committed ?? false });
  }

  /** The scheduler binds the pod to a node: PodScheduled, and its container is being created. */
  schedulePod(namespace: string, name: string, node = 'node-1'): PodObject {
    return this.#updatePod(namespace, name, (pod) => {
      if (pod.spec.nodeName) return;
      pod.spec.nodeName = node;
      pod.status.hostIP = '10.0.0.1';
      setCondition(pod, 'PodScheduled', 'True');
      pod.status.containerStatuses = pod.spec.containers.map((c) =>
        containerStatus(c, { waiting: { reason: 'ContainerCreating' } }),
      );
    });
  }

  /** The kubelet has the container waiting (e.g. ErrImagePull, ImagePullBackOff, CreateContainerConfigError). */
  waitContainer(namespace: string, name: string, reason: string, message?: string): PodObject {
    if (!this.pod(namespace, name)?.spec.nodeName) this.schedulePod(namespace, name);
    return this.#updatePod(namespace, name, (pod) => {
      pod.status.containerStatuses = pod.spec.containers.map((c) =>
        containerStatus(c, { waiting: { reason, ...(message ? { message } : {}) } }),
      );
    });
  }

  /** The pod runs (scheduled first if it was not): phase Running, its container started and ready. */
  runPod(namespace: string, name: string): PodObject {
    if (!this.pod(namespace, name)?.spec.nodeName) this.schedulePod(namespace, name);
    return this.#updatePod(namespace, name, (pod) => {
      const at = now();
      pod.status.phase = 'Running';
      pod.status.startTime ??= at;
      pod.status.podIP = '10.1.0.7';
      setCondition(pod, 'Initialized', 'True');
      setCondition(pod, 'ContainersReady', 'True');
      setCondition(pod, 'Ready', 'True');
      pod.status.containerStatuses = pod.spec.containers.map((c) =>
        containerStatus(c, { running: { startedAt: at } }, true),
      );
    });
  }

  /** The container exits on its own: Succeeded with 0, Failed otherwise (restartPolicy Never). */
  completePod(namespace: string, name: string, exitCode = 0, reason?: string): PodObject {
    return this.#terminate(namespace, name, exitCode, reason ?? (exitCode === 0 ? 'Completed' : 'Error'));
  }

  /** The container crashes: Failed with this exit code. */
  failPod(namespace: string, name: string, exitCode = 1, reason = 'Error'): PodObject {
    return this.#terminate(namespace, name, exitCode, reason);
  }

  /** The kernel kills the container for exceeding its memory limit: Failed, OOMKilled, 137. */
  oomKillPod(namespace: string, name: string): PodObject {
    return this.#terminate(namespace, name, 137, 'OOMKilled');
  }

  /** The kubelet evicts the pod under node pressure: Failed, reason Evicted, a DisruptionTarget condition. */
  evictPod(namespace: string, name: string, message = 'The node was low on resource: memory. '): PodObject {
    return this.#updatePod(namespace, name, (pod) => {
      const at = now();
      pod.status.phase = 'Failed';
      pod.status.reason = 'Evicted';
      pod.status.message = message;
      setCondition(pod, 'DisruptionTarget', 'True', 'TerminationByKubelet', message);
      setCondition(pod, 'Ready', 'False', 'PodFailed');
      pod.status.containerStatuses = pod.spec.containers.map((c) =>
        containerStatus(c, {
          terminated: { exitCode: 137, reason: 'ContainerStatusUnknown', finishedAt: at },
        }),
      );
    });
  }

  /**
   * An eviction through the Eviction API (a node drain, a preemption): a DisruptionTarget condition, then a
   * graceful deletion that the kubelet carries out as for any deletion.
   */
  evictPodByApi(namespace: string, name: string): PodObject {
    this.#updatePod(namespace, name, (pod) => {
      setCondition(pod, 'DisruptionTarget', 'True', 'EvictionByEvictionAPI', 'Eviction API: evicting');
    });
    return this.#deletePod(namespace, name, undefined);
  }

  /** Someone (kubectl delete) deletes the pod, with a grace period (default: the pod's own, 30 s). */
  deletePod(namespace: string, name: string, graceSeconds?: number): PodObject {
    return this.#deletePod(namespace, name, graceSeconds);
  }

  /** The kubelet finishes a graceful deletion: the container stops with exitCode, then the pod goes. */
  finishTermination(namespace: string, name: string, exitCode = this.stopExitCode): void {
    const pod = this.#objects.get(key('pods', namespace, name)) as PodObject | undefined;
    if (!pod?.metadata.deletionTimestamp) throw new Error(`pod ${namespace}/${name} is not being deleted`);
    if (pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed')
      this.#terminate(namespace, name, exitCode, exitCode === 0 ? 'Completed' : 'Error');
    const current = this.#objects.get(key('pods', namespace, name));
    if (current) this.#remove('pods', current);
  }

  /** Forgets the change history: a watch that resumes from an earlier resourceVersion gets 410 Expired. */
  compact(): void {
    this.#history.length = 0;
    this.#compactedRv = this.#rv;
  }

  /** Closes every watch stream, as a broken connection or an API server restart would. */
  dropWatches(): void {
    for (const w of [...this.#watchers]) {
      this.#watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
      w.res.destroy();
    }
  }

  /** Sends an ERROR event with this status code on every watch stream, then closes them (an API server in trouble). */
  errorWatches(code = 500, message = 'injected watch error'): void {
    for (const w of [...this.#watchers]) {
      this.#watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
      write(w.res, {
        type: 'ERROR',
        object: {
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message,
          reason: 'InternalError',
          code,
        },
      });
      w.res.end();
    }
  }

  /** Sends a BOOKMARK with the current resourceVersion to the watches that asked for them. */
  sendBookmarks(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      write(w.res, {
        type: 'BOOKMARK',
        object: {
          kind: KINDS[w.resource],
          apiVersion: 'v1',
          metadata: { resourceVersion: String(this.#rv) },
        },
      });
    }
  }

  // ------------------------------------------------------------------ HTTP

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const entry: KubeRequest = {
      verb: 'unknown',
      resource: null,
      namespace: null,
      name: null,
      status: 0,
      query,
    };
    this.requests.push(entry);
    try {
      if (req.headers.authorization !== `Bearer ${this.token}`)
        throw new StatusError(401, 'Unauthorized', 'Unauthorized');
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/(pods|secrets)(?:\/([^/]+))?$/.exec(url.pathname);
      if (!m) throw new StatusError(404, 'NotFound', 'the server could not find the requested resource');
      const namespace = decodeURIComponent(m[1]!);
      const resource = m[2] as KubeResource;
      const name = m[3] ? decodeURIComponent(m[3]) : null;
      const verb = verbOf(req.method ?? 'GET', name, url.searchParams.get('watch'));
      Object.assign(entry, { verb, resource, namespace, name });
      if (!verb) throw new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method');
      this.#authorize(verb, resource, namespace, name);
      const at = this.#failures.findIndex((f) => f.verb === verb && f.resource === resource);
      const failure = at >= 0 ? this.#failures.splice(at, 1)[0]! : null;
      const body = req.method === 'POST' || req.method === 'DELETE' ? await readBody(req) : null;
      // only a write can be carried out and still fail its answer
      if (failure && (!failure.committed || (verb !== 'create' && verb !== 'delete')))
        return this.#fail(res, entry, failure);
      // the request is carried out; then its answer is replaced by the failure
      const send = (status: number, answer: unknown) =>
        failure ? this.#fail(res, entry, failure) : this.#send(res, entry, status, answer);
      switch (verb) {
        case 'watch':
          entry.status = 200;
          this.#watch(res, resource, namespace, url.searchParams);
          return;
        case 'list':
          return send(200, this.#listBody(resource, namespace, url.searchParams));
        case 'get': {
          const o = this.#objects.get(key(resource, namespace, name!));
          if (!o) throw notFound(resource, name!);
          return send(200, o);
        }
        case 'create': {
          if (!this.#namespaces.has(namespace))
            throw new StatusError(404, 'NotFound', `namespaces "${namespace}" not found`, {
              name: namespace,
              kind: 'namespaces',
            });
          if (!body || typeof body !== 'object') throw new StatusError(400, 'BadRequest', 'no object given');
          const o = body as KubeObject & { metadata?: Partial<KubeMeta> };
          if (o.metadata?.namespace && o.metadata.namespace !== namespace)
            throw new StatusError(
              400,
              'BadRequest',
              'the namespace of the provided object does not match the namespace sent on the request',
            );
          if (o.kind && o.kind !== KINDS[resource])
            throw new StatusError(400, 'BadRequest', `${o.kind} is not a ${KINDS[resource]}`);
          return send(201, this.#create(resource, namespace, o as unknown as Record<string, unknown>));
        }
        case 'delete': {
          const options = (body ?? {}) as { gracePeriodSeconds?: number };
          const q = url.searchParams.get('gracePeriodSeconds');
          const grace = q !== null ? Number(q) : options.gracePeriodSeconds;
          if (grace !== undefined && (!Number.isInteger(grace) || grace < 0))
            throw new StatusError(400, 'BadRequest', `invalid gracePeriodSeconds: ${q}`);
          if (resource === 'pods') return send(200, this.#deletePod(namespace, name!, grace));
          const o = this.#objects.get(key(resource, namespace, name!));
          if (!o) throw notFound(resource, name!);
          this.#remove(resource, o);
          return send(200, {
            kind: 'Status',
            apiVersion: 'v1',
            metadata: {},
            status: 'Success',
            details: { name: name!, kind: resource, uid: o.metadata.uid },
          });
        }
      }
    } catch (err) {
      const e =
        err instanceof StatusError
          ? err
          : new StatusError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`);
      this.#send(res, entry, e.code, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: e.message,
        reason: e.reason,
        ...(e.details ? { details: e.details } : {}),
        code: e.code,
      });
    }
  }

  #send(res: ServerResponse, entry: KubeRequest, status: number, body: unknown): void {
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  /** Answers with an injected failure: its Status, or a dropped connection. */
  #fail(res: ServerResponse, entry: KubeRequest, f: InjectedFailure): void {
    if (f.answer === 'reset') {
      entry.status = 0;
      res.socket?.destroy();
      return;
    }
    this.#send(res, entry, f.answer, statusBody(f.answer, reasonOf(f.answer), f.message));
  }

  #authorize(verb: KubeVerb, resource: KubeResource, namespace: string, name: string | null): void {
    if (!this.#allow) return;
    if ((this.#allow[resource] ?? []).includes(verb)) return;
    const subject = name ? `${resource} "${name}"` : resource;
    throw new StatusError(
      403,
      'Forbidden',
      `${subject} is forbidden: User "${this.user}" cannot ${verb} resource "${resource}" in API group "" in the namespace "${namespace}"`,
      { ...(name ? { name } : {}), kind: resource },
    );
  }

  #listBody(resource: KubeResource, namespace: string, params: URLSearchParams): unknown {
    const selector = parseSelector(params.get('labelSelector'));
    const items = [...this.#objects.values()]
      .filter((o) => KINDS[resource] === o.kind && o.metadata.namespace === namespace)
      .filter((o) => selector(o.metadata.labels ?? {}))
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion))
      .map((o) => {
        // list items carry no kind of their own
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return rest;
      });
    return {
      kind: `${KINDS[resource]}List`,
      apiVersion: 'v1',
      metadata: { resourceVersion: String(this.#rv) },
      items,
    };
  }

  #watch(res: ServerResponse, resource: KubeResource, namespace: string, params: URLSearchParams): void {
    const selector = parseSelector(params.get('labelSelector'));
    const from = params.get('resourceVersion');
    const timeoutSeconds = Number(params.get('timeoutSeconds') ?? 0);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const matches = (o: KubeObject) =>
      o.kind === KINDS[resource] && o.metadata.namespace === namespace && selector(o.metadata.labels ?? {});
    if (!from || from === '0') {
      // no resourceVersion: the current state as ADDED events, then the changes
      for (const o of this.#objects.values()) if (matches(o)) write(res, { type: 'ADDED', object: o });
    } else {
      const rv = Number(from);
      if (!Number.isInteger(rv) || rv < 0) {
        write(res, {
          type: 'ERROR',
          object: statusBody(400, 'BadRequest', `invalid resource version: ${from}`),
        });
        res.end();
        return;
      }
      if (rv < this.#compactedRv) {
        write(res, {
          type: 'ERROR',
          object: statusBody(410, 'Expired', `too old resource version: ${rv} (${this.#compactedRv})`),
        });
        res.end();
        return;
      }
      for (const c of this.#history)
        if (c.resourceVersion > rv && matches(c.object)) write(res, { type: c.type, object: c.object });
    }
    const watcher: Watcher = {
      namespace,
      resource,
      selector,
      bookmarks: params.get('allowWatchBookmarks') === 'true',
      res,
      timer: null,
    };
    if (timeoutSeconds > 0)
      watcher.timer = setTimeout(() => {
        this.#watchers.delete(watcher);
        res.end();
      }, timeoutSeconds * 1000);
    this.#watchers.add(watcher);
    res.on('close', () => {
      if (watcher.timer) clearTimeout(watcher.timer);
      this.#watchers.delete(watcher);
    });
    for (const listener of [...this.#watchListeners]) listener();
  }

  // ------------------------------------------------------------------ the store

  #create(
    resource: KubeResource,
    namespace: string,
    input: Record<string, unknown>,
    options: { keepStatus?: boolean } = {},
  ): KubeObject {
    const metaIn = (input.metadata ?? {}) as Partial<KubeMeta>;
    let name = metaIn.name;
    if (!name && metaIn.generateName) name = `${metaIn.generateName}${randomUUID().slice(0, 5)}`;
    const kind = KINDS[resource];
    const causes = resource === 'pods' ? validatePod(input, name ?? '') : validateSecret(input, name ?? '');
    if (causes.length) throw invalid(kind, name ?? '', causes);
    if (this.#objects.has(key(resource, namespace, name!)))
      throw new StatusError(409, 'AlreadyExists', `${resource} "${name}" already exists`, {
        name,
        kind: resource,
      });
    const metadata: KubeMeta = {
      ...metaIn,
      name: name!,
      namespace,
      uid: randomUUID(),
      resourceVersion: '0',
      creationTimestamp: now(),
    };
    delete metadata.deletionTimestamp;
    delete metadata.deletionGracePeriodSeconds;
    let object: KubeObject;
    if (resource === 'pods') {
      const spec = structuredClone(input.spec) as PodObject['spec'];
      spec.restartPolicy ??= 'Always';
      spec.terminationGracePeriodSeconds ??= 30;
      spec.serviceAccountName ??= 'default';
      for (const c of spec.containers)
        c.imagePullPolicy ??=
          c.image.endsWith(':latest') || !c.image.includes(':') ? 'Always' : 'IfNotPresent';
      object = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata,
        spec,
        status:
          options.keepStatus && input.status
            ? (structuredClone(input.status) as PodObject['status'])
            : { phase: 'Pending', qosClass: qosClass(spec.containers) },
      };
    } else {
      const data: Record<string, string> = { ...((input.data as Record<string, string>) ?? {}) };
      for (const [k, v] of Object.entries((input.stringData as Record<string, string>) ?? {}))
        data[k] = Buffer.from(v, 'utf8').toString('base64');
      object = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata,
        type: (input.type as string) ?? 'Opaque',
        ...(input.immutable !== undefined ? { immutable: input.immutable as boolean } : {}),
        data,
      };
    }
    this.#commit('ADDED', resource, object);
    // an owner that does not exist (any more): the garbage collector deletes the dependent
    if (metadata.ownerReferences?.length) this.#later(() => this.#collect(namespace));
    return structuredClone(object);
  }

  #deletePod(namespace: string, name: string, graceSeconds: number | undefined): PodObject {
    const pod = this.#objects.get(key('pods', namespace, name)) as PodObject | undefined;
    if (!pod) throw notFound('pods', name);
    let grace = graceSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
    // a pod on no node, or whose containers are done, has nothing to wait for
    if (!pod.spec.nodeName || pod.status.phase === 'Succeeded' || pod.status.phase === 'Failed') grace = 0;
    if (grace === 0) {
      const last = structuredClone(pod);
      this.#remove('pods', pod);
      return last;
    }
    const current = pod.metadata.deletionGracePeriodSeconds;
    if (pod.metadata.deletionTimestamp && current !== undefined && current <= grace)
      return structuredClone(pod);
    const updated = this.#updatePod(namespace, name, (p) => {
      p.metadata.deletionTimestamp = new Date(Date.now() + grace * 1000)
        .toISOString()
        .replace(/\.\d+Z$/, 'Z');
      p.metadata.deletionGracePeriodSeconds = grace;
    });
    if (this.kubelet === 'auto')
      this.#later(() => {
        const p = this.#objects.get(key('pods', namespace, name));
        if (p?.metadata.deletionTimestamp) this.finishTermination(namespace, name);
      });
    return updated;
  }

  #terminate(namespace: string, name: string, exitCode: number, reason: string): PodObject {
    return this.#updatePod(namespace, name, (pod) => {
      const at = now();
      pod.status.phase = exitCode === 0 ? 'Succeeded' : 'Failed';
      setCondition(pod, 'Ready', 'False', 'PodCompleted');
      setCondition(pod, 'ContainersReady', 'False', 'PodCompleted');
      pod.status.containerStatuses = pod.spec.containers.map((c) => {
        const startedAt =
          pod.status.containerStatuses?.find((s) => s.name === c.name)?.state.running?.startedAt ?? at;
        return containerStatus(c, { terminated: { exitCode, reason, startedAt, finishedAt: at } });
      });
    });
  }

  #updatePod(namespace: string, name: string, change: (pod: PodObject) => void): PodObject {
    const pod = this.#objects.get(key('pods', namespace, name)) as PodObject | undefined;
    if (!pod) throw new Error(`FakeKubeApi: no pod ${namespace}/${name}`);
    const next = structuredClone(pod);
    change(next);
    this.#commit('MODIFIED', 'pods', next);
    return structuredClone(next);
  }

  #remove(resource: KubeResource, object: KubeObject): void {
    const k = key(resource, object.metadata.namespace, object.metadata.name);
    if (!this.#objects.has(k)) return;
    this.#commit('DELETED', resource, structuredClone(object));
    // background garbage collection of what the object owned
    this.#later(() => this.#collect(object.metadata.namespace));
  }

  /** Deletes the objects of a namespace none of whose owners exists. */
  #collect(namespace: string): void {
    const uids = new Set([...this.#objects.values()].map((o) => o.metadata.uid));
    for (const [k, o] of [...this.#objects.entries()]) {
      const owners = o.metadata.ownerReferences ?? [];
      if (o.metadata.namespace !== namespace || owners.length === 0) continue;
      if (owners.some((r) => uids.has(r.uid))) continue;
      this.#remove(k.startsWith('pods/') ? 'pods' : 'secrets', o);
    }
  }

  #commit(type: WatchEventType, resource: KubeResource, object: KubeObject): void {
    const rv = ++this.#rv;
    object.metadata.resourceVersion = String(rv);
    const k = key(resource, object.metadata.namespace, object.metadata.name);
    if (type === 'DELETED') this.#objects.delete(k);
    else this.#objects.set(k, object);
    const change: KubeChange = { type, resource, resourceVersion: rv, object: structuredClone(object) };
    this.#history.push(change);
    for (const w of this.#watchers) {
      if (w.resource !== resource || w.namespace !== object.metadata.namespace) continue;
      if (!w.selector(object.metadata.labels ?? {})) continue;
      write(w.res, { type, object: change.object });
    }
    for (const listener of [...this.#changeListeners]) listener(change);
  }

  /** Runs fn after the current request (as the garbage collector and the kubelet do, on their own time). */
  #later(fn: () => void): void {
    const t = setImmediate(() => {
      this.#timers.delete(t);
      fn();
    });
    this.#timers.add(t);
  }
}

// ------------------------------------------------------------------ helpers

function key(resource: KubeResource, namespace: string, name: string): string {
  return `${resource}/${namespace}/${name}`;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function write(res: ServerResponse, event: unknown): void {
  if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(event)}\n`);
}

function statusBody(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function notFound(resource: KubeResource, name: string): StatusError {
  return new StatusError(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource });
}

function reasonOf(code: number): string {
  const reasons: Record<number, string> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'NotFound',
    409: 'AlreadyExists',
    410: 'Expired',
    422: 'Invalid',
    429: 'TooManyRequests',
    500: 'InternalError',
    503: 'ServiceUnavailable',
    504: 'Timeout',
  };
  return reasons[code] ?? 'Unknown';
}

function verbOf(method: string, name: string | null, watch: string | null): KubeVerb | null {
  if (method === 'GET') return name ? 'get' : watch === 'true' || watch === '1' ? 'watch' : 'list';
  if (method === 'POST' && !name) return 'create';
  if (method === 'DELETE' && name) return 'delete';
  return null;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new StatusError(400, 'BadRequest', 'the request body is not JSON');
  }
}

function setCondition(
  pod: PodObject,
  type: string,
  status: 'True' | 'False',
  reason?: string,
  message?: string,
): void {
  pod.status.conditions ??= [];
  const conditions = pod.status.conditions;
  const next: PodCondition = {
    type,
    status,
    lastTransitionTime: now(),
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
  };
  const i = conditions.findIndex((c) => c.type === type);
  if (i >= 0) conditions[i] = next;
  else conditions.push(next);
}

function containerStatus(c: Container, state: ContainerState, ready = false): ContainerStatus {
  return {
    name: c.name,
    image: c.image,
    imageID: state.running || state.terminated ? `docker-pullable://${c.image}@sha256:${'0'.repeat(64)}` : '',
    ready,
    started: !!state.running,
    restartCount: 0,
    state,
  };
}

function qosClass(containers: Container[]): string {
  const all = containers.map((c) => c.resources ?? {});
  if (all.every((r) => !r.limits && !r.requests)) return 'BestEffort';
  const guaranteed = all.every(
    (r) =>
      r.limits?.cpu &&
      r.limits.memory &&
      (!r.requests?.cpu || r.requests.cpu === r.limits.cpu) &&
      (!r.requests?.memory || r.requests.memory === r.limits.memory),
  );
  return guaranteed ? 'Guaranteed' : 'Burstable';
}
