// The Kubernetes driver: a Pod and a Secret with its credentials per worker, through the official client;
// pod phases are watched (not polled) and turned into worker exits. docs/kubernetes.md describes it.
import {
  CoreV1Api,
  type KubeConfig,
  type V1ContainerStatus,
  type V1EnvVar,
  type V1Pod,
  type V1Secret,
  Watch,
} from '@kubernetes/client-node';
import { ENDING_TIMEOUT_MS, WORKER_ENV } from '@usher/protocol';
import { type Clock, systemClock, type TimerHandle } from '../engine/clock.ts';
import { type Logger, silentLogger } from '../util/logger.ts';
import { announceExit, type WorkerDriver, type WorkerExit, type WorkerLaunch } from './driver.ts';
import { loadKubeConfig } from './kubernetes-auth.ts';
import {
  describeApiError,
  describeWatchError,
  isAbort,
  isTimeout,
  KubernetesApiError,
  mayHaveApplied,
  type Verb,
} from './kubernetes-errors.ts';
import {
  CONTAINER_NAME,
  cannotStart,
  decodeHandle,
  encodeHandle,
  exitOf,
  type KubernetesSpec,
  LABELS,
  labelValue,
  MANAGED_BY,
  podName,
  readSpec,
  rebaseUrl,
  toKubernetesVars,
  workerContainer,
} from './kubernetes-pods.ts';
import type { KubernetesSettings } from './kubernetes-settings.ts';

export { loadKubeConfig } from './kubernetes-auth.ts';
export { describeApiError, KubernetesApiError } from './kubernetes-errors.ts';
export {
  CONTAINER_NAME,
  type KubernetesHandle,
  LABELS,
  labelValue,
  MANAGED_BY,
  podName,
  rebaseUrl,
  toKubernetesVars,
} from './kubernetes-pods.ts';
export { REQUIRED_PERMISSIONS } from './kubernetes-settings.ts';

export interface KubernetesDriverOptions {
  /** a loaded KubeConfig (see KubernetesDriver.fromSettings for in-cluster and kubeconfig files) */
  kubeConfig: KubeConfig;
  /** namespace of worker pods unless a project's worker.namespace names another */
  namespace: string;
  /** the installation label of this Usher's pods (default `usher`) */
  installation?: string;
  /** the URL pods dial to reach Usher; rewrites USHER_WORKER_URL and USHER_SIGNALLING_URL (default: unchanged) */
  usherUrl?: string;
  imagePullSecrets?: readonly string[];
  serviceAccountName?: string;
  /** after stop() deleted a pod, how long it may take to go before it is force-deleted; default 60 s (SPEC §3) */
  cleanupLimitMs?: number;
  /** the clock of the cleanup limit (tests pass a ManualClock) */
  clock?: Clock;
  /** whether close() deletes the pods this driver runs (default false: pods outlive the server; see the docs) */
  stopWorkersOnClose?: boolean;
  /** the grace period close() gives pods when stopWorkersOnClose is set (default 2000) */
  closeGraceMs?: number;
  /** how long one watch request lasts before it is renewed, in seconds (default 300) */
  watchTimeoutSeconds?: number;
  log?: Logger;
}

/** How far a worker's pod has come, for logs and operators: reported on every change. */
export interface KubernetesProgress {
  workerId: string;
  namespace: string;
  pod: string;
  /** pending: created, not on a node yet; scheduled: on a node; waiting: a container is waiting; running */
  step: 'pending' | 'scheduled' | 'waiting' | 'running';
  node?: string;
  reason?: string;
  message?: string;
}

interface PodWorker {
  readonly workerId: string;
  readonly namespace: string;
  readonly pod: string;
  uid: string | null;
  /** #epoch when the pod was known to exist: a list started after that which lacks it means it is gone */
  knownSince: number | null;
  /** true once stop/reap/close asked for the exit */
  expected: boolean;
  /** stop() has asked the API to delete the pod */
  deleting: boolean;
  /** while isAlive() adopts it: an exit is kept, not reported (isAlive answers false instead) */
  quiet: boolean;
  /** the pod as last seen */
  last: V1Pod | null;
  /** why the pod is being disrupted (DisruptionTarget condition), for the exit's message */
  disruption: string | null;
  progress: string | null;
  done: boolean;
  forceTimer: TimerHandle | null;
  readonly exited: PromiseWithResolvers<void>;
  /** the pod and secret deletions after the exit */
  cleanup: Promise<void> | null;
  /** while start() creates the pod and its secret */
  creation: Promise<void> | null;
}

interface NamespaceWatch {
  readonly namespace: string;
  resourceVersion: string;
  /** the first list: resolves once the namespace's pods are known and the watch runs */
  ready: Promise<void>;
  abort: AbortController | null;
  retry: NodeJS.Timeout | null;
  failures: number;
  /** bumps on each (re)start, so that a late callback of an earlier request is ignored */
  generation: number;
}

const WATCH_RETRY_MS = 1_000;
const WATCH_RETRY_MAX_MS = 30_000;
/** A watch that ends this soon after it opened, with nothing heard, counts as a failure (backoff). */
const QUICK_WATCH_END_MS = 2_000;

export class KubernetesDriver implements WorkerDriver {
  readonly name = 'kubernetes' as const;
  get closeStopsWorkers(): boolean {
    return this.#stopWorkersOnClose;
  }
  readonly #kc: KubeConfig;
  readonly #core: CoreV1Api;
  readonly #namespace: string;
  readonly #installation: string;
  readonly #usherUrl: string | undefined;
  readonly #imagePullSecrets: readonly string[];
  readonly #serviceAccountName: string | undefined;
  readonly #cleanupLimitMs: number;
  readonly #clock: Clock;
  readonly #stopWorkersOnClose: boolean;
  readonly #closeGraceMs: number;
  readonly #watchTimeoutSeconds: number;
  readonly #log: Logger;
  readonly #selector: string;
  readonly #workers = new Map<string, PodWorker>();
  readonly #byPod = new Map<string, PodWorker>();
  readonly #watches = new Map<string, NamespaceWatch>();
  /**
   * Pods whose create failed in a way that may still go through (namespace/name → until when, on the driver's
   * clock): the delete that followed may have come before the API server made the pod, so one that shows up
   * within the cleanup limit is deleted then.
   */
  readonly #doomed = new Map<string, number>();
  /** namespaces whose watch could not start while pods there are tracked: the timer of the next try */
  readonly #watchRetries = new Map<string, TimerHandle>();
  readonly #listeners: Array<(exit: WorkerExit) => void> = [];
  readonly #progressListeners: Array<(p: KubernetesProgress) => void> = [];
  readonly #cleanups = new Set<Promise<void>>();
  #epoch = 0;
  #closed = false;

  constructor(options: KubernetesDriverOptions) {
    this.#kc = options.kubeConfig;
    this.#core = this.#kc.makeApiClient(CoreV1Api);
    this.#namespace = options.namespace;
    this.#installation = options.installation ?? 'usher';
    this.#usherUrl = options.usherUrl;
    this.#imagePullSecrets = options.imagePullSecrets ?? [];
    this.#serviceAccountName = options.serviceAccountName;
    this.#cleanupLimitMs = options.cleanupLimitMs ?? ENDING_TIMEOUT_MS;
    this.#clock = options.clock ?? systemClock;
    this.#stopWorkersOnClose = options.stopWorkersOnClose ?? false;
    this.#closeGraceMs = options.closeGraceMs ?? 2_000;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
    this.#log = options.log ?? silentLogger;
    this.#selector = `${LABELS.managedBy}=${MANAGED_BY},${LABELS.installation}=${this.#installation}`;
  }

  /** A driver from the server's `kubernetes:` settings: in-cluster auth or a kubeconfig file. */
  static fromSettings(
    settings: Readonly<KubernetesSettings>,
    extra: Omit<KubernetesDriverOptions, 'kubeConfig' | 'namespace'> = {},
  ): KubernetesDriver {
    return new KubernetesDriver({
      kubeConfig: loadKubeConfig(settings),
      namespace: settings.namespace,
      installation: settings.installation,
      usherUrl: settings.usherUrl,
      imagePullSecrets: settings.imagePullSecrets,
      serviceAccountName: settings.serviceAccountName,
      ...extra,
    });
  }

  /** The API server this driver talks to. */
  get server(): string {
    return this.#kc.getCurrentCluster()?.server ?? '(no cluster in the kubeconfig)';
  }

  async start(launch: WorkerLaunch): Promise<{ handle: string }> {
    const { workerId } = launch;
    if (this.#closed) throw new Error(`KubernetesDriver is closed; cannot start worker ${workerId}`);
    if (this.#workers.has(workerId)) throw new Error(`worker ${workerId} is already running`);
    const spec = readSpec(launch.spec);
    const namespace = spec.namespace ?? this.#namespace;
    const name = podName(workerId);
    const w = this.#track(workerId, namespace, name);
    const creation = Promise.withResolvers<void>();
    w.creation = creation.promise;
    try {
      // the watch runs before the pod exists, so that no change of it can be missed
      await this.#ensureWatch(namespace).catch((err) => {
        this.#forget(w);
        throw err;
      });
      await this.#create(w, launch, spec);
    } finally {
      w.creation = null;
      creation.resolve();
    }
    return { handle: encodeHandle({ namespace, pod: name }) };
  }

  /** Creates the worker's pod, then its secret; on failure nothing is left and the error says what to fix. */
  async #create(w: PodWorker, launch: WorkerLaunch, spec: KubernetesSpec): Promise<void> {
    const { namespace, pod: name } = w;
    const env = this.#workerEnv(launch.env);
    let created: V1Pod;
    try {
      created = await this.#call('create', 'pods', namespace, name, launch.projectId, () =>
        this.#core.createNamespacedPod({ namespace, body: this.#podFor(launch, spec, name, env) }),
      );
    } catch (err) {
      this.#forget(w);
      // No answer, or a 5xx, may come after the API server made the pod: it would be scheduled and wait for its
      // secret (CreateContainerConfigError), holding its node's resources until a start-up reaps it as an
      // orphan. It is deleted by its name (404: it was never made); there is no secret yet, which comes after
      // the pod. A 4xx made nothing, and a 409 is a pod that is not this start's: both are left alone.
      if (mayHaveApplied(err)) {
        await this.#deleteLeftovers(w, { pod: true, secret: false });
        this.#doomed.set(`${namespace}/${name}`, this.#clock.now() + this.#cleanupLimitMs);
      }
      throw err;
    }
    w.uid = created.metadata?.uid ?? null;
    w.knownSince = this.#epoch;
    // The pod comes first, so that the secret can name it as its owner and go with it. Until the secret exists
    // the kubelet holds the container back (CreateContainerConfigError) and retries.
    try {
      await this.#call('create', 'secrets', namespace, name, launch.projectId, () =>
        this.#core.createNamespacedSecret({ namespace, body: this.#secretFor(launch, name, w.uid, env) }),
      );
    } catch (err) {
      // without its secret the pod can never run: take it away again; the start failed
      w.expected = true;
      this.#forget(w);
      w.exited.resolve();
      // the secret too when it may have been made after all (its owner reference would take it with the pod,
      // but only once the garbage collector gets to it)
      await this.#deleteLeftovers(w, { pod: true, secret: mayHaveApplied(err) });
      throw err;
    }
  }

  /** A pod that shows up after its create had failed (#doomed): it would only hold its node, so it goes. */
  #deleteIfDoomed(namespace: string, name: string): void {
    const now = this.#clock.now();
    for (const [key, until] of this.#doomed) if (until < now) this.#doomed.delete(key);
    const key = `${namespace}/${name}`;
    if (!this.#doomed.delete(key)) return;
    this.#log.warn({ namespace, pod: name }, 'a pod whose create had failed was made after all: deleting it');
    const deleted = this.#deletePod(namespace, name, 0).then(
      () => {},
      (err) =>
        this.#log.error({ err, namespace, pod: name }, 'could not delete it; the next start-up reaps it'),
    );
    this.#cleanups.add(deleted);
    void deleted.finally(() => this.#cleanups.delete(deleted));
  }

  /** After a failed start: deletes the worker's pod (at once) and/or secret by name; 404 means it is not there. */
  async #deleteLeftovers(w: PodWorker, what: { pod: boolean; secret: boolean }): Promise<void> {
    const { workerId, namespace, pod } = w;
    try {
      if (what.pod) await this.#deletePod(namespace, pod, 0);
      if (what.secret) await this.#deleteSecret(namespace, pod);
    } catch (err) {
      this.#log.error(
        { err, workerId, namespace, pod },
        'could not delete what a failed worker start may have left; the next start-up reaps it',
      );
    }
  }

  /**
   * Deletes the worker's pod with a grace period of graceMs (the container gets SIGTERM), and force-deletes it
   * (grace 0) when it is still there after the cleanup limit. Resolves once the pod is gone and its secret
   * deleted. A worker this driver does not know (started by another server) is looked for by its pod name, in
   * the namespace its stored handle names, then in those this driver knows.
   */
  async stop(workerId: string, graceMs: number, handle?: string | null): Promise<void> {
    let w = this.#workers.get(workerId);
    // a stop during start() waits for the pod to exist (or for the start to fail)
    if (w?.creation) await w.creation;
    if (w && this.#workers.get(workerId) !== w && !w.done) w = undefined;
    if (!w) {
      w = await this.#findForStop(workerId, handle ? decodeHandle(handle)?.namespace : undefined);
      if (!w) return;
    }
    if (!w.done && !w.deleting && w.knownSince !== null) {
      w.expected = true;
      w.deleting = true;
      const worker = w;
      const graceSeconds = Math.max(1, Math.ceil(Math.max(0, graceMs) / 1000));
      worker.forceTimer = this.#clock.setTimer(this.#clock.now() + this.#cleanupLimitMs, () => {
        worker.forceTimer = null;
        if (worker.done) return;
        this.#log.warn(
          { workerId, namespace: worker.namespace, pod: worker.pod, limitMs: this.#cleanupLimitMs },
          'worker pod still there after the cleanup limit: force-deleting it',
        );
        return this.#deletePod(worker.namespace, worker.pod, 0).then(
          (gone) => {
            if (gone) this.#gone(worker, null);
          },
          (err) => {
            // stop() must end: the pod may be left behind, and the next start-up reaps it as an orphan
            this.#log.error({ err, workerId }, 'force-deleting a worker pod failed; giving up on it');
            this.#gone(worker, null);
          },
        );
      });
      try {
        const gone = await this.#deletePod(w.namespace, w.pod, graceSeconds);
        if (gone) this.#gone(w, null);
      } catch (err) {
        this.#log.error(
          { err, workerId },
          'deleting a worker pod failed; the cleanup limit force-deletes it',
        );
      }
    } else if (!w.done) {
      w.expected = true;
    }
    await w.exited.promise;
    await w.cleanup;
  }

  /**
   * Whether the worker's pod still runs (Pending or Running, not being deleted). A live pod left by an earlier
   * server run is adopted: from then on its exit is reported and stop() stops it. When the API cannot be
   * reached the answer is yes, so that the worker keeps its re-attach window.
   */
  async isAlive(workerId: string, handle: string): Promise<boolean> {
    const h = decodeHandle(handle);
    if (h === null || this.#closed) return false;
    const own = this.#workers.get(workerId);
    if (own && own.namespace === h.namespace && own.pod === h.pod) return !own.done;
    if (own) return false;
    let watching = true;
    try {
      await this.#ensureWatch(h.namespace);
    } catch (err) {
      watching = false;
      this.#log.warn({ err, workerId }, 'cannot watch worker pods; taking the worker as alive for now');
    }
    const w = this.#track(workerId, h.namespace, h.pod);
    w.quiet = true;
    let pod: V1Pod;
    try {
      pod = await this.#call('get', 'pods', h.namespace, h.pod, null, () =>
        this.#core.readNamespacedPod({ namespace: h.namespace, name: h.pod }),
      );
    } catch (err) {
      if (err instanceof KubernetesApiError && err.status === 404) {
        this.#forget(w);
        this.#startCleanup(w, false);
        return false;
      }
      this.#log.warn({ err, workerId }, 'cannot tell whether a worker pod runs; taking it as alive for now');
      w.knownSince = this.#epoch;
      w.quiet = false;
      if (!watching) this.#watchLater(h.namespace);
      return true;
    }
    const phase = pod.status?.phase;
    if (w.done || phase === 'Succeeded' || phase === 'Failed' || pod.metadata?.deletionTimestamp) {
      this.#forget(w);
      this.#startCleanup(w, true);
      return false;
    }
    w.uid = pod.metadata?.uid ?? null;
    w.knownSince = this.#epoch;
    w.last = pod;
    w.quiet = false;
    if (!watching) this.#watchLater(h.namespace);
    return true;
  }

  /** Force-deletes a worker's pod (and its secret) left by an earlier server run. Reports no exit. */
  async reap(workerId: string, handle: string): Promise<void> {
    const h = decodeHandle(handle);
    if (h === null) return;
    const own = this.#workers.get(workerId);
    if (own) {
      own.expected = true;
      own.done = true;
      if (own.forceTimer) this.#clock.clearTimer(own.forceTimer);
      own.forceTimer = null;
      this.#forget(own);
      own.exited.resolve();
    }
    await this.#deletePod(h.namespace, h.pod, 0);
    await this.#deleteSecret(h.namespace, h.pod);
  }

  /**
   * Start-up: force-deletes this installation's worker pods whose worker the server no longer knows (e.g. a
   * server died between creating a pod and recording it). `isKnown` says whether a worker id is live in the
   * database. Looks in the default namespace and in `namespaces` (those that projects name). Returns the
   * `namespace/pod` names it deleted.
   */
  async reapOrphans(
    isKnown: (workerId: string) => Promise<boolean>,
    namespaces: Iterable<string> = [],
  ): Promise<string[]> {
    const reaped: string[] = [];
    for (const namespace of new Set([this.#namespace, ...namespaces])) {
      let list: { items: V1Pod[] };
      try {
        list = await this.#call('list', 'pods', namespace, null, null, () =>
          this.#core.listNamespacedPod({ namespace, labelSelector: this.#selector }),
        );
      } catch (err) {
        // one namespace out of reach does not keep the others from being cleaned up
        this.#log.error({ err, namespace }, 'cannot look for orphaned worker pods');
        continue;
      }
      for (const pod of list.items) {
        const name = pod.metadata?.name;
        const workerId = pod.metadata?.annotations?.[LABELS.worker] ?? pod.metadata?.labels?.[LABELS.worker];
        if (!name || !workerId || this.#byPod.has(`${namespace}/${name}`)) continue;
        if (await isKnown(workerId)) continue;
        this.#log.warn({ workerId, namespace, pod: name }, 'deleting an orphaned worker pod');
        await this.#deletePod(namespace, name, 0);
        await this.#deleteSecret(namespace, name);
        reaped.push(`${namespace}/${name}`);
      }
    }
    return reaped;
  }

  onExit(listener: (exit: WorkerExit) => void): void {
    this.#listeners.push(listener);
  }

  /** Called on each step of a worker pod's way to running (for logs; the engine does not need it). */
  onProgress(listener: (progress: KubernetesProgress) => void): void {
    this.#progressListeners.push(listener);
  }

  /**
   * Stops watching. Pods outlive the server unless stopWorkersOnClose is set: a restarted server (or another
   * one on the same database) adopts them through isAlive, and their workers re-attach.
   */
  async close(): Promise<void> {
    if (this.#stopWorkersOnClose && !this.#closed) {
      await Promise.all([...this.#workers.keys()].map((id) => this.stop(id, this.#closeGraceMs)));
    }
    this.#closed = true;
    for (const watch of this.#watches.values()) {
      watch.generation++;
      watch.abort?.abort();
      if (watch.retry) clearTimeout(watch.retry);
    }
    this.#watches.clear();
    for (const timer of this.#watchRetries.values()) this.#clock.clearTimer(timer);
    this.#watchRetries.clear();
    for (const w of [...this.#workers.values()]) {
      if (w.forceTimer) this.#clock.clearTimer(w.forceTimer);
      this.#forget(w);
      w.exited.resolve();
    }
    while (this.#cleanups.size) await Promise.allSettled([...this.#cleanups]);
  }

  // ------------------------------------------------------------------ pods and secrets

  #podFor(launch: WorkerLaunch, spec: KubernetesSpec, name: string, env: Record<string, string>): V1Pod {
    const labels = this.#labels(launch);
    // the project's env goes into the pod spec; a name the credentials use would shadow them (env wins over
    // envFrom), so those stay in the secret only
    const plain: V1EnvVar[] = Object.entries(spec.env)
      .filter(([key]) => !(key in env))
      .map(([key, value]) => ({ name: key, value }));
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels, annotations: this.#annotations(launch) },
      spec: {
        restartPolicy: 'Never',
        // a worker needs no access to the Kubernetes API
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        ...(this.#serviceAccountName ? { serviceAccountName: this.#serviceAccountName } : {}),
        ...(this.#imagePullSecrets.length
          ? { imagePullSecrets: this.#imagePullSecrets.map((s) => ({ name: s })) }
          : {}),
        ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
        ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
        containers: [
          {
            name: CONTAINER_NAME,
            image: spec.image,
            ...(spec.command ? { command: spec.command.map(toKubernetesVars) } : {}),
            ...(plain.length ? { env: plain } : {}),
            envFrom: [{ secretRef: { name } }],
            ...(spec.resources ? { resources: spec.resources } : {}),
          },
        ],
      },
    };
  }

  #secretFor(
    launch: WorkerLaunch,
    name: string,
    podUid: string | null,
    env: Record<string, string>,
  ): V1Secret {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        labels: this.#labels(launch),
        annotations: this.#annotations(launch),
        ...(podUid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name, uid: podUid }] } : {}),
      },
      type: 'Opaque',
      immutable: true,
      data: Object.fromEntries(
        Object.entries(env).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
      ),
    };
  }

  #labels(launch: WorkerLaunch): Record<string, string> {
    const labels: Record<string, string> = {
      [LABELS.managedBy]: MANAGED_BY,
      [LABELS.component]: 'worker',
      [LABELS.installation]: this.#installation,
      [LABELS.project]: labelValue(launch.projectId),
      [LABELS.region]: labelValue(launch.region),
      [LABELS.worker]: labelValue(launch.workerId),
    };
    const session = launch.env[WORKER_ENV.sessionId];
    if (session) labels[LABELS.session] = labelValue(session);
    return labels;
  }

  /** The exact ids (a label value may have had to be shortened). */
  #annotations(launch: WorkerLaunch): Record<string, string> {
    const annotations: Record<string, string> = {
      [LABELS.project]: launch.projectId,
      [LABELS.region]: launch.region,
      [LABELS.worker]: launch.workerId,
    };
    const session = launch.env[WORKER_ENV.sessionId];
    if (session) annotations[LABELS.session] = session;
    return annotations;
  }

  /** The launch's environment, with the URLs rebased on usherUrl when pods reach Usher at another address. */
  #workerEnv(env: Record<string, string>): Record<string, string> {
    const out = { ...env };
    if (!this.#usherUrl) return out;
    for (const key of [WORKER_ENV.url, WORKER_ENV.signallingUrl]) {
      const value = out[key];
      if (value) out[key] = rebaseUrl(value, this.#usherUrl);
    }
    return out;
  }

  /** Deletes a pod; resolves true when it is gone already (404) or was removed at once (grace 0). */
  async #deletePod(namespace: string, name: string, graceSeconds: number): Promise<boolean> {
    try {
      await this.#call('delete', 'pods', namespace, name, null, () =>
        this.#core.deleteNamespacedPod({
          namespace,
          name,
          gracePeriodSeconds: graceSeconds,
          propagationPolicy: 'Background',
        }),
      );
      return graceSeconds === 0;
    } catch (err) {
      if (err instanceof KubernetesApiError && err.status === 404) return true;
      throw err;
    }
  }

  async #deleteSecret(namespace: string, name: string): Promise<void> {
    try {
      await this.#call('delete', 'secrets', namespace, name, null, () =>
        this.#core.deleteNamespacedSecret({ namespace, name }),
      );
    } catch (err) {
      if (err instanceof KubernetesApiError && err.status === 404) return;
      throw err;
    }
  }

  // ------------------------------------------------------------------ tracking

  #track(workerId: string, namespace: string, pod: string): PodWorker {
    const w: PodWorker = {
      workerId,
      namespace,
      pod,
      uid: null,
      knownSince: null,
      expected: false,
      deleting: false,
      quiet: false,
      last: null,
      disruption: null,
      progress: null,
      done: false,
      forceTimer: null,
      exited: Promise.withResolvers<void>(),
      cleanup: null,
      creation: null,
    };
    this.#workers.set(workerId, w);
    this.#byPod.set(`${namespace}/${pod}`, w);
    return w;
  }

  #forget(w: PodWorker): void {
    if (this.#workers.get(w.workerId) === w) this.#workers.delete(w.workerId);
    const key = `${w.namespace}/${w.pod}`;
    if (this.#byPod.get(key) === w) this.#byPod.delete(key);
  }

  /** A worker this driver does not track, asked to stop: its pod is found by name in the known namespaces. */
  async #findForStop(workerId: string, stored?: string): Promise<PodWorker | undefined> {
    if (this.#closed) return undefined;
    const name = podName(workerId);
    // the namespace its stored handle names first: a project's own namespace may be one this server never watched
    const namespaces = new Set([...(stored ? [stored] : []), this.#namespace, ...this.#watches.keys()]);
    for (const namespace of namespaces) {
      try {
        await this.#ensureWatch(namespace);
        const pod = await this.#call('get', 'pods', namespace, name, null, () =>
          this.#core.readNamespacedPod({ namespace, name }),
        );
        if (this.#workers.has(workerId)) return this.#workers.get(workerId);
        const w = this.#track(workerId, namespace, name);
        w.uid = pod.metadata?.uid ?? null;
        w.knownSince = this.#epoch;
        w.last = pod;
        return w;
      } catch (err) {
        if (err instanceof KubernetesApiError && err.status === 404) continue;
        this.#log.error({ err, workerId }, 'cannot look for the pod of a worker to stop');
      }
    }
    return undefined;
  }

  /** A change of a pod (from a list or the watch). */
  #observe(namespace: string, type: string, pod: V1Pod): void {
    const name = pod.metadata?.name;
    if (!name) return;
    const w = this.#byPod.get(`${namespace}/${name}`);
    if (!w && type !== 'DELETED') this.#deleteIfDoomed(namespace, name);
    if (!w || w.done) return;
    const uid = pod.metadata?.uid ?? null;
    if (w.uid && uid && uid !== w.uid) return; // an earlier pod of that name
    if (!w.uid && uid) w.uid = uid;
    w.last = pod;
    const disruption = pod.status?.conditions?.find(
      (c) => c.type === 'DisruptionTarget' && c.status === 'True',
    );
    if (disruption) w.disruption = [disruption.reason, disruption.message].filter(Boolean).join(': ');
    if (type === 'DELETED') {
      this.#gone(w, pod);
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      this.#finish(w, exitOf(w, pod, phase));
      return;
    }
    const container = workerContainer(pod);
    const waiting = container?.state?.waiting;
    if (waiting && cannotStart(waiting)) {
      const image = pod.spec?.containers?.[0]?.image ?? '?';
      this.#finish(w, {
        workerId: w.workerId,
        code: null,
        signal: null,
        expected: w.expected,
        error: `the worker pod cannot start: ${waiting.reason} for image "${image}"${waiting.message ? ` (${waiting.message})` : ''}; check worker.image, and kubernetes.imagePullSecrets for a private registry`,
      });
      return;
    }
    this.#progress(w, pod, container);
  }

  #progress(w: PodWorker, pod: V1Pod, container: V1ContainerStatus | undefined): void {
    const node = pod.spec?.nodeName;
    const waiting = container?.state?.waiting;
    let p: KubernetesProgress;
    const base = { workerId: w.workerId, namespace: w.namespace, pod: w.pod };
    if (pod.status?.phase === 'Running') p = { ...base, step: 'running', ...(node ? { node } : {}) };
    else if (waiting?.reason && waiting.reason !== 'ContainerCreating')
      p = {
        ...base,
        step: 'waiting',
        reason: waiting.reason,
        ...(waiting.message ? { message: waiting.message } : {}),
      };
    else if (node) p = { ...base, step: 'scheduled', node };
    else {
      const unschedulable = pod.status?.conditions?.find(
        (c) => c.type === 'PodScheduled' && c.status === 'False',
      );
      p = {
        ...base,
        step: 'pending',
        ...(unschedulable?.reason ? { reason: unschedulable.reason } : {}),
        ...(unschedulable?.message ? { message: unschedulable.message } : {}),
      };
    }
    const key = `${p.step}|${p.node ?? ''}|${p.reason ?? ''}`;
    if (key === w.progress) return;
    w.progress = key;
    for (const listener of this.#progressListeners) {
      try {
        listener(p);
      } catch (err) {
        this.#log.error({ err }, 'a progress listener failed');
      }
    }
  }

  /** The pod is gone from the API (deleted, or missing from a fresh list). */
  #gone(w: PodWorker, pod: V1Pod | null): void {
    if (w.done) return;
    const last = pod ?? w.last;
    const exit = last ? exitOf(w, last, last.status?.phase) : null;
    const error = w.expected
      ? exit?.error
      : w.disruption
        ? `the worker pod was evicted (${w.disruption})`
        : (exit?.error ?? 'the worker pod was deleted, not by Usher');
    const result: WorkerExit = {
      workerId: w.workerId,
      code: exit?.code ?? null,
      signal: null,
      expected: w.expected,
    };
    if (error) result.error = error;
    this.#finish(w, result, { podGone: true });
  }

  #finish(w: PodWorker, exit: WorkerExit, options: { podGone?: boolean } = {}): void {
    if (w.done) return;
    w.done = true;
    if (w.forceTimer) this.#clock.clearTimer(w.forceTimer);
    w.forceTimer = null;
    if (w.quiet) return; // isAlive() is asking: it answers false, and the engine handles the exit
    this.#forget(w);
    const final = { ...exit, expected: w.expected };
    // a worker that was asked to stop ended as asked, whatever its container's exit code
    if (final.error === undefined || w.expected) delete final.error;
    if (!w.expected) this.#log.warn({ workerId: w.workerId, pod: w.pod, exit: final }, 'worker pod ended');
    announceExit(this.#listeners, final);
    w.exited.resolve();
    this.#startCleanup(w, !options.podGone);
  }

  /** Deletes what is left of a worker: its pod (when not gone yet) and its secret. */
  #startCleanup(w: PodWorker, deletePod: boolean): void {
    const run = (async () => {
      try {
        if (deletePod) await this.#deletePod(w.namespace, w.pod, 0);
        await this.#deleteSecret(w.namespace, w.pod);
      } catch (err) {
        this.#log.error({ err, workerId: w.workerId }, 'cleaning up a worker pod failed');
      }
    })();
    w.cleanup = run;
    this.#cleanups.add(run);
    void run.finally(() => this.#cleanups.delete(run));
  }

  // ------------------------------------------------------------------ watching

  #ensureWatch(namespace: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('KubernetesDriver is closed'));
    const known = this.#watches.get(namespace);
    if (known) return known.ready;
    const watch: NamespaceWatch = {
      namespace,
      resourceVersion: '',
      ready: Promise.resolve(),
      abort: null,
      retry: null,
      failures: 0,
      generation: 0,
    };
    watch.ready = this.#list(watch).then(
      () => this.#watch(watch),
      (err) => {
        // the next call tries again
        if (this.#watches.get(namespace) === watch) this.#watches.delete(namespace);
        throw err;
      },
    );
    this.#watches.set(namespace, watch);
    return watch.ready;
  }

  /**
   * Tries again, in the background, to watch a namespace whose watch could not start while a pod there is
   * tracked (isAlive adopted it with the API out of reach): after 1 s, 2 s, 4 s … 30 s on the driver's clock,
   * until the watch runs (its list then reports what the pods did meanwhile), no pod there is tracked any more,
   * or the driver closes.
   */
  #watchLater(namespace: string, failures = 0): void {
    if (this.#closed || this.#watchRetries.has(namespace)) return;
    const delay = Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_MS * 2 ** failures);
    const timer = this.#clock.setTimer(this.#clock.now() + delay, () => {
      this.#watchRetries.delete(namespace);
      if (this.#closed || ![...this.#byPod.values()].some((w) => w.namespace === namespace)) return;
      return this.#ensureWatch(namespace).then(
        () => this.#log.info({ namespace }, 'watching worker pods again'),
        (err) => {
          this.#log.warn({ err, namespace }, 'still cannot watch worker pods; retrying');
          this.#watchLater(namespace, failures + 1);
        },
      );
    });
    this.#watchRetries.set(namespace, timer);
  }

  /** Lists the namespace's worker pods: the watch resumes from there, and tracked pods not in it are gone. */
  async #list(watch: NamespaceWatch): Promise<void> {
    const epoch = ++this.#epoch;
    const { namespace } = watch;
    const list = await this.#call('list', 'pods', namespace, null, null, () =>
      this.#core.listNamespacedPod({ namespace, labelSelector: this.#selector }),
    );
    watch.resourceVersion = list.metadata?.resourceVersion ?? '';
    const seen = new Set<string>();
    for (const pod of list.items) {
      if (pod.metadata?.name) seen.add(pod.metadata.name);
      this.#observe(namespace, 'ADDED', pod);
    }
    for (const w of [...this.#byPod.values()]) {
      if (w.namespace !== namespace || w.knownSince === null || w.knownSince >= epoch) continue;
      if (!seen.has(w.pod)) this.#gone(w, null);
    }
  }

  async #watch(watch: NamespaceWatch): Promise<void> {
    if (this.#closed) return;
    const generation = ++watch.generation;
    const current = () => !this.#closed && watch.generation === generation;
    let expired = false;
    /** the API server reported an error other than 410 on this watch */
    let errored = false;
    /** an event (or a bookmark) arrived on this watch */
    let heard = false;
    const startedAt = Date.now();
    const client = new Watch(this.#kc);
    // The client drops a watch that is silent for 30 s (a setting its types keep private); a quiet namespace is
    // normal, so a silent connection is only renewed a little after the server should have ended it.
    (client as unknown as { requestTimeoutMs: number }).requestTimeoutMs =
      (this.#watchTimeoutSeconds + 30) * 1000;
    const onEvent = (type: string, object: Record<string, unknown>) => {
      if (!current()) return;
      if (type === 'ERROR') {
        const status = object as { code?: number; reason?: string; message?: string };
        if (status.code === 410) expired = true;
        else {
          errored = true;
          this.#log.warn({ namespace: watch.namespace, status }, 'the pod watch reported an error');
        }
        return;
      }
      heard = true;
      const rv = (object.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
      if (rv) watch.resourceVersion = rv;
      watch.failures = 0;
      if (type === 'BOOKMARK') return;
      this.#observe(watch.namespace, type, object as V1Pod);
    };
    const onDone = (err: unknown) => {
      if (!current()) return;
      watch.abort = null;
      const status = (err as { statusCode?: number } | null)?.statusCode;
      if (expired || status === 410) {
        // the resource version is too old to resume from: list again, then watch from the list
        this.#relist(watch);
      } else if (err && !isAbort(err) && !isTimeout(err)) {
        watch.failures++;
        this.#log.warn(
          { namespace: watch.namespace, err: describeWatchError(err, this.server, watch.namespace) },
          'the pod watch failed; retrying',
        );
        this.#retry(watch, () => this.#watch(watch));
      } else if (errored || (!heard && Date.now() - startedAt < QUICK_WATCH_END_MS)) {
        // an error, or a stream that ends as soon as it opens (a proxy, a lagging API server): again, but with
        // the backoff of failures, not in a tight loop
        watch.failures++;
        this.#retry(watch, () => this.#watch(watch));
      } else {
        // the server ended the request (timeoutSeconds) or the connection went idle: resume where it was
        void this.#watch(watch);
      }
    };
    let controller: AbortController;
    try {
      controller = await client.watch(
        `/api/v1/namespaces/${encodeURIComponent(watch.namespace)}/pods`,
        {
          labelSelector: this.#selector,
          resourceVersion: watch.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: this.#watchTimeoutSeconds,
        },
        onEvent,
        onDone,
      );
    } catch (err) {
      // the request did not start (credentials that could not be renewed, say): tried again with backoff,
      // never left as a rejection nobody handles
      if (!current()) return;
      watch.failures++;
      this.#log.warn(
        { namespace: watch.namespace, err: describeWatchError(err, this.server, watch.namespace) },
        'the pod watch could not start; retrying',
      );
      this.#retry(watch, () => this.#watch(watch));
      return;
    }
    if (current()) watch.abort = controller;
    else controller.abort();
  }

  #relist(watch: NamespaceWatch): void {
    if (this.#closed) return;
    this.#list(watch).then(
      () => this.#watch(watch),
      (err) => {
        watch.failures++;
        this.#log.warn({ namespace: watch.namespace, err }, 'listing worker pods failed; retrying');
        this.#retry(watch, () => this.#relist(watch));
      },
    );
  }

  #retry(watch: NamespaceWatch, fn: () => void | Promise<void>): void {
    if (this.#closed) return;
    // the first failure is retried at once (a dropped connection), then 1 s, 2 s, 4 s … 30 s
    const delay =
      watch.failures <= 1 ? 0 : Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_MS * 2 ** (watch.failures - 2));
    if (watch.retry) clearTimeout(watch.retry);
    watch.retry = setTimeout(() => {
      watch.retry = null;
      void fn();
    }, delay);
    watch.retry.unref();
  }

  // ------------------------------------------------------------------ errors

  /** Runs an API call; a failure becomes a KubernetesApiError that says what to fix. */
  async #call<T>(
    verb: Verb,
    resource: 'pods' | 'secrets',
    namespace: string,
    name: string | null,
    projectId: string | null,
    fn: () => Promise<T>,
  ): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw describeApiError(err, { verb, resource, namespace, name, projectId, server: this.server });
    }
  }
}
