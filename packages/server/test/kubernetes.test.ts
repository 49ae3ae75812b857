// The Kubernetes driver in a real Usher server, against the in-process fake API server, on both databases. The
// test plays the kubelet and the container: when a worker pod appears it reads the pod's secret, runs the real
// worker SDK with that environment and moves the pod to Running; it kills pods the way a node would.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import type { ProjectInput, SessionEvent } from '@usher/protocol';
import { KubernetesDriver, LABELS, podName, REQUIRED_PERMISSIONS } from '@usher/server/kubernetes';
import {
  createTestDatabase,
  databaseKinds,
  FakeKubeApi,
  type PodObject,
  type TestDatabase,
  TestServer,
} from '@usher/testing';
import { type Assignment, UsherWorker } from '@usher/worker';
import { freePort } from './fixtures/server-child.ts';

const NS = 'usher-workers';
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A worker pod the test runs: its environment came from its secret; its program is an UsherWorker. */
interface PlayedPod {
  name: string;
  env: Record<string, string>;
  sdk: UsherWorker;
  assignments: Assignment[];
  registrations: number;
}

/** Plays the kubelet and the containers of worker pods (those that read a secret), as they appear. */
class PodPlayer {
  readonly pods = new Map<string, PlayedPod>();
  readonly #fake: FakeKubeApi;
  readonly #off: () => void;
  readonly #waiters: Array<{ pred: (p: PlayedPod) => boolean; resolve: (p: PlayedPod) => void }> = [];

  constructor(fake: FakeKubeApi) {
    this.#fake = fake;
    this.#off = fake.onChange((c) => {
      if (c.resource !== 'pods' || c.object.metadata.namespace !== NS) return;
      const pod = c.object as PodObject;
      const played = this.pods.get(pod.metadata.name);
      if (c.type === 'ADDED' && !played && pod.spec.containers[0]?.envFrom?.[0]?.secretRef)
        void this.#run(pod);
      // a pod being deleted: the kubelet stops its container
      else if (played && (c.type === 'DELETED' || pod.metadata.deletionTimestamp)) void played.sdk.close();
    });
  }

  /** Resolves with the first played pod that satisfies pred (now, or when it changes). */
  next(pred: (p: PlayedPod) => boolean = () => true): Promise<PlayedPod> {
    const now = [...this.pods.values()].find(pred);
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }

  async close(): Promise<void> {
    this.#off();
    await Promise.all([...this.pods.values()].map((p) => p.sdk.close().catch(() => {})));
  }

  async #run(pod: PodObject): Promise<void> {
    const { name } = pod.metadata;
    // the kubelet holds the container back until its secret exists (the driver creates it just after the pod)
    await this.#fake.waitFor('secrets', (s) => s.metadata.namespace === NS && s.metadata.name === name);
    if (!this.#fake.pod(NS, name)) return;
    const env = this.#fake.secretData(NS, name)!;
    this.#fake.runPod(NS, name);
    const played: PlayedPod = {
      name,
      env,
      sdk: null as unknown as UsherWorker,
      assignments: [],
      registrations: 0,
    };
    played.sdk = new UsherWorker({
      env,
      logger: quiet,
      reconnect: { initialDelayMs: 20, maxDelayMs: 200, multiplier: 2, jitter: 0, maxAttempts: 100 },
      onConnect: (a: Assignment) => {
        played.assignments.push(a);
      },
    });
    played.sdk.on('registered', () => {
      played.registrations++;
      this.#changed(played);
    });
    played.sdk.on('connect', () => this.#changed(played));
    // the worker program ended on its own (after `stopped`): its container exits 0
    played.sdk.on('close', () => {
      const now = this.#fake.pod(NS, name);
      if (now?.status.phase === 'Running' && !now.metadata.deletionTimestamp)
        this.#fake.completePod(NS, name, 0);
    });
    this.pods.set(name, played);
    void played.sdk.start().catch(() => {});
  }

  #changed(p: PlayedPod): void {
    for (const w of [...this.#waiters]) {
      if (!w.pred(p)) continue;
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve(p);
    }
  }
}

function k8sProject(id: string, extra: Partial<ProjectInput> = {}): ProjectInput {
  return {
    id,
    name: id,
    kind: 'agent',
    public: true,
    worker: {
      driver: 'kubernetes',
      image: 'registry.example.com/agent:1.0',
      resources: { limits: { memory: '1Gi' } },
    },
    regions: { default: { min: 0, max: 2 } },
    ...extra,
  };
}

interface Scene {
  db: TestDatabase;
  fake: FakeKubeApi;
  player: PodPlayer;
  /** a server with a Kubernetes driver on the fake; closed when the test ends */
  server(options?: { port?: number }): Promise<TestServer>;
}

async function scene(
  kind: 'sqlite' | 'postgres',
  ctx: { after: (fn: () => Promise<void>) => void },
): Promise<Scene> {
  const db = await createTestDatabase(kind);
  // RBAC as deploy/ grants it: the test fails if the driver needs more
  const fake = await new FakeKubeApi({ namespaces: [NS], allow: REQUIRED_PERMISSIONS }).start();
  const player = new PodPlayer(fake);
  const servers: TestServer[] = [];
  ctx.after(async () => {
    for (const s of servers) await s.close();
    await player.close();
    await fake.close();
    await db.drop();
  });
  return {
    db,
    fake,
    player,
    async server(options = {}) {
      const kubeConfig = new KubeConfig();
      kubeConfig.loadFromString(fake.kubeconfig(NS));
      const driver = new KubernetesDriver({ kubeConfig, namespace: NS, installation: 'it' });
      const t = new TestServer({
        storage: db.storage,
        kubernetesDriver: driver,
        serverId: 'k8s-test-server',
        ...(options.port ? { port: options.port } : {}),
      });
      servers.push(t);
      return t.start();
    },
  };
}

/** Every event of a session from now on, in order. */
function record(t: TestServer, sessionId: string): SessionEvent[] {
  const events: SessionEvent[] = [];
  t.server.hub.subscribe(sessionId, (e) => events.push(e));
  return events;
}

for (const kind of databaseKinds()) {
  describe(`Kubernetes workers (${kind})`, () => {
    test('a full session on a worker pod: Pod and Secret with the credentials, active, ended, both deleted', async (c) => {
      const { fake, player, server } = await scene(kind, c);
      const t = await server();
      await t.createProject(k8sProject('k8s'));
      const s = await t.createSession('k8s');
      assert.equal(s.state, 'connecting');
      const active = await t.waitForState(s.id, 'active');
      const workerId = active.workerId as string;
      const name = podName(workerId);

      const pod = fake.pod(NS, name)!;
      assert.equal(pod.metadata.labels?.[LABELS.project], 'k8s');
      assert.equal(pod.metadata.labels?.[LABELS.session], s.id);
      assert.equal(pod.metadata.labels?.[LABELS.worker], workerId);
      assert.equal(pod.spec.containers[0]?.image, 'registry.example.com/agent:1.0');
      const played = await player.next((p) => p.name === name && p.assignments.length > 0);
      assert.equal(played.env.USHER_WORKER_ID, workerId);
      assert.equal(played.env.USHER_SESSION_ID, s.id);
      assert.equal(played.env.USHER_WORKER_URL, `${t.url.replace(/^http/, 'ws')}/workers/ws`);
      assert.equal(played.assignments[0]?.sessionId, s.id);
      const secret = fake.secret(NS, name)!;
      assert.equal(secret.metadata.ownerReferences?.[0]?.uid, pod.metadata.uid);

      const r = await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal(r.status, 200);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 1000);
      await fake.waitForGone('pods', NS, name);
      await fake.waitForGone('secrets', NS, name);
      await t.workersWhere('k8s', (ws) => ws.length === 0);
    });

    test('a pod OOMKilled while its session is active: AGENT_CRASHED, then 4006 with the reason', async (c) => {
      const { fake, server } = await scene(kind, c);
      const t = await server();
      await t.createProject(k8sProject('oom'));
      const s = await t.createSession('oom');
      const active = await t.waitForState(s.id, 'active');
      const name = podName(active.workerId as string);
      const events = record(t, s.id);

      fake.oomKillPod(NS, name);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 4006);
      assert.equal(ended.endReason, 'worker_crashed');
      const error = events.find((e) => e.type === 'session.error');
      assert.equal(error?.type === 'session.error' && error.code, 'AGENT_CRASHED');
      assert.match(
        (error as { message: string }).message,
        /ran out of memory \(OOMKilled, limit 1Gi\)/,
        'the session error says why the pod died',
      );
      await fake.waitForGone('pods', NS, name);
      await fake.waitForGone('secrets', NS, name);
    });

    test('a worker pod whose first pull is throttled (ImagePullBackOff) is waited for, and its session goes active', async (c) => {
      const { fake, server } = await scene(kind, c);
      // the kubelet's first pull of each new pod is throttled by the registry: it backs off, then pulls again
      const image = '"registry.example.com/agent:1.0"';
      const off = fake.onChange((change) => {
        if (change.type !== 'ADDED' || change.resource !== 'pods') return;
        const { namespace, name } = change.object.metadata;
        fake.waitContainer(
          namespace,
          name,
          'ErrImagePull',
          `failed to pull and unpack image ${image}: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit`,
        );
        fake.waitContainer(namespace, name, 'ImagePullBackOff', `Back-off pulling image ${image}`);
      });
      c.after(async () => void off());
      const t = await server();
      await t.createProject(k8sProject('throttled'));
      const s = await t.createSession('throttled');
      const outcome = await Promise.race([t.waitForState(s.id, 'active'), t.waitForState(s.id, 'ended')]);
      assert.equal(
        outcome.state,
        'active',
        `the session went ${outcome.state} (${String(outcome.endReason)})`,
      );
      assert.deepEqual(
        fake.list('pods', NS).map((p) => p.metadata.name),
        [podName(outcome.workerId as string)],
        'on its first pod',
      );
    });

    test('auto-restart: a failed pod sends the session to a fresh pod; an evicted one ends it 4006', async (c) => {
      const { fake, player, server } = await scene(kind, c);
      const t = await server();
      await t.createProject(k8sProject('again', { autoRestart: { enabled: true, maxRestarts: 1 } }));
      const s = await t.createSession('again');
      const first = (await t.waitForState(s.id, 'active')).workerId as string;
      const events = record(t, s.id);

      fake.failPod(NS, podName(first), 1);
      const restarted = await t.nextEvent(
        s.id,
        (e) => e.type === 'session.status_changed' && e.status === 'active',
      );
      assert.ok(restarted);
      const again = await t.session(s.id);
      const second = again.workerId as string;
      assert.notEqual(second, first, 'a fresh worker pod');
      assert.equal(again.restarts, 1);
      const played = await player.next((p) => p.name === podName(second) && p.assignments.length > 0);
      assert.equal(played.assignments[0]?.restarts, 1);
      assert.equal(fake.pod(NS, podName(second))?.metadata.labels?.[LABELS.session], s.id);
      await fake.waitForGone('pods', NS, podName(first));

      fake.evictPod(NS, podName(second), 'The node was low on resource: ephemeral-storage.');
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 4006);
      const errors = events.flatMap((e) => (e.type === 'session.error' ? [e] : []));
      assert.deepEqual(
        errors.map((e) => e.recoverable),
        [true, false],
      );
      assert.match(errors[0]?.message ?? '', /exited with code 1/);
      assert.match(errors[1]?.message ?? '', /evicted from its node: The node was low on resource/);
    });

    test('a restarted server adopts its running pods, whose workers re-attach; it reaps orphaned pods at start-up', async (c) => {
      const { fake, player, server } = await scene(kind, c);
      const port = await freePort();
      const one = await server({ port });
      await one.createProject(k8sProject('keep'));
      const s = await one.createSession('keep');
      const workerId = (await one.waitForState(s.id, 'active')).workerId as string;
      const played = await player.next((p) => p.name === podName(workerId) && p.registrations === 1);

      // left by an earlier run: a pod of this installation whose worker the database does not know, and one
      // of another installation in the same namespace
      const seedPod = (id: string, installation: string) =>
        fake.seed<PodObject>({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name: podName(id),
            namespace: NS,
            labels: {
              [LABELS.managedBy]: 'usher',
              [LABELS.installation]: installation,
              [LABELS.worker]: id,
            },
            annotations: { [LABELS.worker]: id },
          },
          spec: {
            containers: [{ name: 'worker', image: 'registry.example.com/agent:0.9' }],
            nodeName: 'node-1',
          },
          status: { phase: 'Running' },
        });
      const orphan = seedPod('w_orphan000000000000000', 'it');
      seedPod('w_staging00000000000000', 'staging');

      await one.close();
      assert.ok(fake.pod(NS, podName(workerId)), 'pods outlive a server that stops');
      const two = await server({ port });
      // start-up reaped the orphan, and only it
      assert.equal(fake.pod(NS, orphan.metadata.name), undefined);
      assert.ok(fake.pod(NS, podName('w_staging00000000000000')), "another installation's pod is left alone");

      await player.next((p) => p === played && p.registrations === 2);
      assert.equal((await two.session(s.id)).state, 'active', 'the session carried on');
      await two.api('POST', `/sessions/${s.id}/end`);
      await two.waitForState(s.id, 'ended');
      await fake.waitForGone('pods', NS, podName(workerId));
      await fake.waitForGone('secrets', NS, podName(workerId));
    });
  });
}
