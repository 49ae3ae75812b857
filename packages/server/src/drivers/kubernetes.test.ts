// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the ${USHER_…} placeholders of worker commands are tested here
// Tests of the Kubernetes driver with the official client against the in-process fake API server: pods and
// secrets, phases and crashes, stop with grace then force, watch recovery, adoption and reaping, API errors.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import {
  FakeKubeApi,
  type FakeKubeApiOptions,
  type KubeVerb,
  type PodObject,
  type SecretObject,
} from '@usher/testing';
import { ManualClock } from '../engine/clock.ts';
import { silentLogger } from '../util/logger.ts';
import type { WorkerExit, WorkerLaunch } from './driver.ts';
import {
  KubernetesApiError,
  KubernetesDriver,
  type KubernetesDriverOptions,
  type KubernetesProgress,
  LABELS,
  labelValue,
  podName,
  REQUIRED_PERMISSIONS,
  rebaseUrl,
  toKubernetesVars,
} from './kubernetes.ts';

const NS = 'workers';

interface Harness {
  fake: FakeKubeApi;
  driver: KubernetesDriver;
  clock: ManualClock;
  exits: WorkerExit[];
  progress: KubernetesProgress[];
  /** resolves with the next exit of a worker (or the one already reported) */
  exit(workerId: string): Promise<WorkerExit>;
  /** another driver on the same API server (another Usher server, or the next run of this one) */
  another(options?: Partial<KubernetesDriverOptions>): KubernetesDriver;
}

/** A fake API server that grants only what the driver declares it needs, and a driver on it; closed after. */
async function setup(
  t: { after: (fn: () => Promise<void>) => void },
  options: { fake?: FakeKubeApiOptions; driver?: Partial<KubernetesDriverOptions> } = {},
): Promise<Harness> {
  const fake = await new FakeKubeApi({
    namespaces: [NS, 'gpu'],
    allow: REQUIRED_PERMISSIONS,
    ...options.fake,
  }).start();
  const clock = new ManualClock();
  const drivers: KubernetesDriver[] = [];
  const make = (extra: Partial<KubernetesDriverOptions> = {}) => {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(fake.kubeconfig(NS));
    const d = new KubernetesDriver({
      kubeConfig,
      namespace: NS,
      installation: 'test',
      clock,
      ...options.driver,
      ...extra,
    });
    drivers.push(d);
    return d;
  };
  const driver = make();
  const exits: WorkerExit[] = [];
  const waiters = new Map<string, (e: WorkerExit) => void>();
  driver.onExit((e) => {
    exits.push(e);
    waiters.get(e.workerId)?.(e);
  });
  const progress: KubernetesProgress[] = [];
  driver.onProgress((p) => progress.push(p));
  t.after(async () => {
    for (const d of drivers) await d.close();
    await fake.close();
  });
  return {
    fake,
    driver,
    clock,
    exits,
    progress,
    exit: (workerId) => {
      const known = exits.find((e) => e.workerId === workerId);
      if (known) return Promise.resolve(known);
      return new Promise((resolve) => waiters.set(workerId, resolve));
    },
    another: make,
  };
}

let counter = 0;

/** A launch as the engine makes it, for a worker with a fresh id. */
function launch(
  spec: Record<string, unknown> = {},
  extra: { sessionId?: string; workerId?: string } = {},
): WorkerLaunch {
  const workerId = extra.workerId ?? `w_test${String(++counter).padStart(4, '0')}`;
  const env: Record<string, string> = {
    USHER_WORKER_URL: 'ws://usher.example.com/workers/ws',
    USHER_WORKER_TOKEN: `worker-token-of-${workerId}`,
    USHER_SIGNALLING_URL: `ws://usher.example.com/workers/signalling?token=worker-token-of-${workerId}`,
    USHER_WORKER_ID: workerId,
    USHER_PROJECT_ID: 'agents',
    USHER_REGION: 'eu',
  };
  if (extra.sessionId) {
    env.USHER_SESSION_ID = extra.sessionId;
    env.USHER_SESSION_TOKEN = `session-token-of-${extra.sessionId}`;
  }
  return {
    workerId,
    projectId: 'agents',
    region: 'eu',
    spec: { driver: 'kubernetes', image: 'registry.example.com/agent:1.2', ...spec },
    env,
  };
}

/** Starts a worker and returns its pod's name and namespace. */
async function started(h: Harness, l: WorkerLaunch): Promise<{ namespace: string; pod: string }> {
  const { handle } = await h.driver.start(l);
  return JSON.parse(handle) as { namespace: string; pod: string };
}

const deletes = (h: Harness, pod: string) =>
  h.fake.requests.filter((r) => r.verb === 'delete' && r.resource === 'pods' && r.name === pod);

describe('KubernetesDriver', () => {
  test('start creates the pod, then a secret owned by it with the credentials, which the pod reads', async (t) => {
    const h = await setup(t);
    const l = launch(
      {
        command: ['/agent', '--signalling=${USHER_SIGNALLING_URL}'],
        env: { MODEL: 'small', USHER_WORKER_TOKEN: 'must not shadow the credentials' },
        resources: { limits: { memory: '512Mi', 'nvidia.com/gpu': '1' }, requests: { cpu: '250m' } },
        nodeSelector: { 'cloud.example.com/gpu': 'l4' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      },
      { sessionId: 's_test0001' },
    );
    const { namespace, pod: name } = await started(h, l);
    assert.equal(namespace, NS);
    assert.equal(name, podName(l.workerId));

    const creates = h.fake.requests.filter((r) => r.verb === 'create').map((r) => r.resource);
    assert.deepEqual(creates, ['pods', 'secrets'], 'the pod first, so that the secret can name it as owner');

    const pod = h.fake.pod(NS, name)!;
    assert.deepEqual(pod.metadata.labels, {
      [LABELS.managedBy]: 'usher',
      [LABELS.component]: 'worker',
      [LABELS.installation]: 'test',
      [LABELS.project]: 'agents',
      [LABELS.region]: 'eu',
      [LABELS.worker]: l.workerId,
      [LABELS.session]: 's_test0001',
    });
    assert.equal(pod.metadata.annotations?.[LABELS.worker], l.workerId);
    assert.equal(pod.spec.restartPolicy, 'Never');
    assert.equal(pod.spec.automountServiceAccountToken, false, 'a worker gets no API token');
    assert.deepEqual(pod.spec.nodeSelector, { 'cloud.example.com/gpu': 'l4' });
    assert.deepEqual(pod.spec.tolerations, [
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
    ]);
    const [container] = pod.spec.containers;
    assert.equal(container?.image, 'registry.example.com/agent:1.2');
    assert.deepEqual(container?.command, ['/agent', '--signalling=$(USHER_SIGNALLING_URL)']);
    assert.deepEqual(container?.env, [{ name: 'MODEL', value: 'small' }]);
    assert.deepEqual(container?.envFrom, [{ secretRef: { name } }]);
    assert.deepEqual(container?.resources, {
      limits: { memory: '512Mi', 'nvidia.com/gpu': '1' },
      requests: { cpu: '250m' },
    });
    assert.ok(!JSON.stringify(pod).includes('worker-token-of-'), 'no credential in the pod spec');

    const secret = h.fake.secret(NS, name)!;
    assert.deepEqual(secret.metadata.ownerReferences, [
      { apiVersion: 'v1', kind: 'Pod', name, uid: pod.metadata.uid },
    ]);
    assert.equal(secret.immutable, true);
    assert.deepEqual(h.fake.secretData(NS, name), l.env);
    assert.equal(secret.metadata.labels?.[LABELS.worker], l.workerId);
  });

  test("a project's worker.namespace puts the pod there; usherUrl points the worker URLs at Usher's in-cluster address", async (t) => {
    const h = await setup(t, { driver: { usherUrl: 'http://usher.usher.svc.cluster.local:8080' } });
    const l = launch({ namespace: 'gpu' });
    const { namespace, pod } = await started(h, l);
    assert.equal(namespace, 'gpu');
    const env = h.fake.secretData('gpu', pod)!;
    assert.equal(env.USHER_WORKER_URL, 'ws://usher.usher.svc.cluster.local:8080/workers/ws');
    assert.equal(
      env.USHER_SIGNALLING_URL,
      `ws://usher.usher.svc.cluster.local:8080/workers/signalling?token=worker-token-of-${l.workerId}`,
    );
    assert.equal(env.USHER_WORKER_TOKEN, l.env.USHER_WORKER_TOKEN);
  });

  test('progress follows the pod to Running; Succeeded is an exit with code 0, then the pod and secret go', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.schedulePod(NS, pod, 'gpu-node-7');
    h.fake.runPod(NS, pod);
    await h.fake.waitFor('pods', (p) => p.metadata.name === pod && p.status.phase === 'Running');

    h.fake.completePod(NS, pod, 0);
    const exit = await h.exit(l.workerId);
    assert.deepEqual(exit, { workerId: l.workerId, code: 0, signal: null, expected: false });
    assert.deepEqual(
      h.progress
        .filter((p) => p.workerId === l.workerId)
        .map((p) => `${p.step}${p.node ? `@${p.node}` : ''}`),
      ['pending', 'scheduled@gpu-node-7', 'running@gpu-node-7'],
    );
    await h.fake.waitForGone('pods', NS, pod);
    await h.fake.waitForGone('secrets', NS, pod);
    assert.equal(h.exits.length, 1, 'one exit');
  });

  for (const crash of [
    {
      what: 'the container fails (exit code 3)',
      cause: (f: FakeKubeApi, pod: string) => f.failPod(NS, pod, 3),
      code: 3,
      error: /exited with code 3 \(Error\)/,
    },
    {
      what: 'OOMKilled',
      cause: (f: FakeKubeApi, pod: string) => f.oomKillPod(NS, pod),
      code: 137,
      error: /ran out of memory \(OOMKilled, limit 256Mi\); raise worker\.resources\.limits\.memory/,
    },
    {
      what: 'evicted by the kubelet',
      cause: (f: FakeKubeApi, pod: string) => f.evictPod(NS, pod, 'The node was low on resource: memory.'),
      code: 137,
      error: /evicted from its node: The node was low on resource: memory\./,
    },
    {
      what: 'evicted through the Eviction API (a node drain)',
      cause: (f: FakeKubeApi, pod: string) => f.evictPodByApi(NS, pod),
      code: 0,
      error: /evicted \(EvictionByEvictionAPI: Eviction API: evicting\)/,
    },
    {
      what: 'deleted by someone else',
      cause: (f: FakeKubeApi, pod: string) => f.deletePod(NS, pod, 0),
      code: null,
      error: /deleted, not by Usher/,
    },
  ]) {
    test(`a running worker whose pod is ${crash.what}: an unexpected exit that says why`, async (t) => {
      const h = await setup(t);
      const l = launch({ resources: { limits: { memory: '256Mi' } } });
      const { pod } = await started(h, l);
      h.fake.runPod(NS, pod);
      crash.cause(h.fake, pod);
      const exit = await h.exit(l.workerId);
      assert.equal(exit.expected, false);
      assert.equal(exit.code, crash.code);
      assert.match(exit.error ?? '', crash.error);
      await h.fake.waitForGone('pods', NS, pod);
      await h.fake.waitForGone('secrets', NS, pod);
    });
  }

  test('an image that cannot be pulled ends the start with a message naming the image; the pod is deleted', async (t) => {
    const h = await setup(t);
    const l = launch({ image: 'registry.example.com/missing:9' });
    const { pod } = await started(h, l);
    h.fake.waitContainer(NS, pod, 'ErrImagePull', 'manifest unknown');
    h.fake.waitContainer(NS, pod, 'ContainerCreating');
    assert.equal(h.exits.length, 0, 'ErrImagePull is retried by the kubelet: not yet a failure');
    h.fake.waitContainer(NS, pod, 'ImagePullBackOff', 'Back-off pulling image');
    const exit = await h.exit(l.workerId);
    assert.equal(exit.expected, false);
    assert.match(exit.error ?? '', /ImagePullBackOff for image "registry\.example\.com\/missing:9"/);
    assert.match(exit.error ?? '', /kubernetes\.imagePullSecrets/);
    await h.fake.waitForGone('pods', NS, pod);
  });

  test('stop deletes the pod with the grace period; the exit is expected; the secret goes with it', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    await h.driver.stop(l.workerId, 2500);
    const exit = await h.exit(l.workerId);
    assert.deepEqual(exit, { workerId: l.workerId, code: 0, signal: null, expected: true });
    assert.equal(deletes(h, pod)[0]?.query.gracePeriodSeconds, '3', 'graceMs rounded up to seconds');
    assert.equal(h.fake.pod(NS, pod), undefined);
    await h.fake.waitForGone('secrets', NS, pod);
    await h.driver.stop(l.workerId, 2500); // stopping again is harmless
    assert.equal(h.exits.length, 1);
  });

  test('a pod that does not go within the cleanup limit is force-deleted (grace 0)', async (t) => {
    // a kubelet that never confirms (a node gone dark): the pod stays terminating
    const h = await setup(t, { fake: { kubelet: 'manual' }, driver: { cleanupLimitMs: 60_000 } });
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    let resolved = false;
    const stopping = h.driver.stop(l.workerId, 10_000).then(() => {
      resolved = true;
    });
    await h.fake.waitFor('pods', (p) => p.metadata.name === pod && !!p.metadata.deletionTimestamp);
    assert.equal(deletes(h, pod)[0]?.query.gracePeriodSeconds, '10');

    await h.clock.advance(59_999);
    assert.equal(deletes(h, pod).length, 1, 'no force before the limit');
    assert.ok(h.fake.pod(NS, pod), 'the pod is still terminating');
    assert.equal(resolved, false);

    await h.clock.advance(1);
    assert.deepEqual(
      deletes(h, pod).map((r) => r.query.gracePeriodSeconds),
      ['10', '0'],
    );
    await stopping;
    assert.equal(h.fake.pod(NS, pod), undefined);
    assert.equal((await h.exit(l.workerId)).expected, true);
    await h.fake.waitForGone('secrets', NS, pod);
  });

  test('stop ends even when the API is gone: after the cleanup limit it gives up on the pod', async (t) => {
    const failed = Promise.withResolvers<void>();
    const log = {
      ...silentLogger,
      error(_obj: object, msg?: string) {
        if (msg?.startsWith('deleting a worker pod failed')) failed.resolve();
      },
    };
    const h = await setup(t, { driver: { log } });
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    await h.fake.close();
    let resolved = false;
    const stopping = h.driver.stop(l.workerId, 1000).then(() => {
      resolved = true;
    });
    await failed.promise;
    assert.equal(resolved, false, 'the pod is not known to be gone');
    await h.clock.advance(60_000);
    await stopping;
    assert.deepEqual(await h.exit(l.workerId), {
      workerId: l.workerId,
      code: null,
      signal: null,
      expected: true,
    });
  });

  test('the watch resumes after a dropped connection from its resourceVersion, without missing a change', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    await h.fake.waitForWatchers(1, NS);
    const lists = () => h.fake.requests.filter((r) => r.verb === 'list').length;
    const listsBefore = lists();
    h.fake.dropWatches();
    h.fake.failPod(NS, pod, 2); // while no watch is open
    const exit = await h.exit(l.workerId);
    assert.equal(exit.code, 2);
    const resumed = h.fake.requests.filter((r) => r.verb === 'watch').at(-1);
    assert.notEqual(resumed?.query.resourceVersion, '', 'resumed from a resourceVersion');
    assert.equal(lists(), listsBefore, 'no new list was needed');
  });

  test('a watch the API server ends with an error is opened again, and misses no change', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    await h.fake.waitForWatchers(1, NS);
    h.fake.errorWatches(500);
    h.fake.failPod(NS, pod, 3); // while no watch is open
    const exit = await h.exit(l.workerId);
    assert.equal(exit.code, 3);
    await h.fake.waitForWatchers(1, NS);
  });

  test('a watch that can no longer resume (410 Expired) lists again and sees what changed meanwhile', async (t) => {
    const h = await setup(t);
    const gone = launch();
    const failed = launch();
    const a = await started(h, gone);
    const b = await started(h, failed);
    h.fake.runPod(NS, a.pod);
    h.fake.runPod(NS, b.pod);
    await h.fake.waitForWatchers(1, NS);
    h.fake.dropWatches();
    h.fake.deletePod(NS, a.pod, 0); // gone without a trace in the next list
    h.fake.failPod(NS, b.pod, 1);
    h.fake.compact();
    const [exitA, exitB] = await Promise.all([h.exit(gone.workerId), h.exit(failed.workerId)]);
    assert.match(exitA.error ?? '', /deleted, not by Usher/);
    assert.match(exitB.error ?? '', /exited with code 1/);
    await h.fake.waitForWatchers(1, NS);
    const calls = h.fake.requests.filter((r) => r.verb === 'watch' || r.verb === 'list').map((r) => r.verb);
    assert.deepEqual(calls, ['list', 'watch', 'watch', 'list', 'watch'], 'list, watch, expired, list, watch');
  });

  test('isAlive adopts a live pod of an earlier run, whose exit is then reported; reap force-deletes', async (t) => {
    const h = await setup(t);
    const l = launch();
    const other = launch();
    const { handle } = await h.driver.start(l);
    const { handle: otherHandle } = await h.driver.start(other);
    const pod = podName(l.workerId);
    h.fake.runPod(NS, pod);
    h.fake.runPod(NS, podName(other.workerId));
    await h.driver.close();
    assert.ok(h.fake.pod(NS, pod), 'pods outlive the server');

    const next = h.another();
    const exits: WorkerExit[] = [];
    next.onExit((e) => exits.push(e));
    assert.equal(await next.isAlive(l.workerId, handle), true);
    assert.equal(await next.isAlive(other.workerId, otherHandle), true);
    assert.equal(
      await next.isAlive('w_nothere', JSON.stringify({ namespace: NS, pod: 'usher-w-nothere' })),
      false,
    );
    assert.equal(await next.isAlive(l.workerId, 'not a handle'), false);

    const reported = new Promise<WorkerExit>((resolve) => next.onExit(resolve));
    h.fake.oomKillPod(NS, pod);
    const exit = await reported;
    assert.equal(exit.workerId, l.workerId);
    assert.match(exit.error ?? '', /OOMKilled/);

    await next.reap(other.workerId, otherHandle);
    assert.equal(h.fake.pod(NS, podName(other.workerId)), undefined);
    assert.equal(deletes(h, podName(other.workerId)).at(-1)?.query.gracePeriodSeconds, '0');
    await h.fake.waitForGone('secrets', NS, podName(other.workerId));
    assert.deepEqual(
      exits.map((e) => e.workerId),
      [l.workerId],
      'reaping reports no exit',
    );
  });

  test('a pod that ended while no server watched is not alive, and is cleaned up', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { handle } = await h.driver.start(l);
    const pod = podName(l.workerId);
    h.fake.runPod(NS, pod);
    await h.driver.close();
    h.fake.completePod(NS, pod, 0);

    const next = h.another();
    const exits: WorkerExit[] = [];
    next.onExit((e) => exits.push(e));
    assert.equal(await next.isAlive(l.workerId, handle), false);
    await h.fake.waitForGone('pods', NS, pod);
    await h.fake.waitForGone('secrets', NS, pod);
    assert.deepEqual(exits, [], 'the engine handles a worker that is not alive as an exit itself');
  });

  test("another server's driver stops a worker by its id: it finds the pod and waits until it is gone", async (t) => {
    const h = await setup(t);
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    const other = h.another();
    const seen: WorkerExit[] = [];
    other.onExit((e) => seen.push(e));
    await other.stop(l.workerId, 1000);
    assert.equal(h.fake.pod(NS, pod), undefined);
    assert.deepEqual(seen, [{ workerId: l.workerId, code: 0, signal: null, expected: true }]);
    // the starting server sees its pod go too; the engine takes both reports as one exit
    assert.equal((await h.exit(l.workerId)).workerId, l.workerId);
    await other.stop('w_neverstarted', 1000); // nothing to find: resolves
  });

  test("start-up reaps this installation's pods whose worker is unknown, and nothing else", async (t) => {
    const h = await setup(t);
    const podOf = (workerId: string, labels: Record<string, string>, namespace = NS) =>
      h.fake.seed<PodObject>({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: podName(workerId), namespace, labels, annotations: { [LABELS.worker]: workerId } },
        spec: { containers: [{ name: 'worker', image: 'agent:1' }], nodeName: 'node-1' },
        status: { phase: 'Running' },
      });
    const ours = (workerId: string) => ({
      [LABELS.managedBy]: 'usher',
      [LABELS.installation]: 'test',
      [LABELS.worker]: workerId,
    });
    const orphan = podOf('w_orphan', ours('w_orphan'));
    h.fake.seed<SecretObject>({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: orphan.metadata.name,
        namespace: NS,
        ownerReferences: [
          { apiVersion: 'v1', kind: 'Pod', name: orphan.metadata.name, uid: orphan.metadata.uid },
        ],
      },
      data: { USHER_WORKER_TOKEN: Buffer.from('t').toString('base64') },
    });
    podOf('w_known', ours('w_known'));
    podOf('w_elsewhere', { ...ours('w_elsewhere'), [LABELS.installation]: 'staging' });
    podOf('w_unmanaged', {});
    podOf('w_gpuorphan', ours('w_gpuorphan'), 'gpu');

    const asked: string[] = [];
    const reaped = await h.driver.reapOrphans(
      async (id) => {
        asked.push(id);
        return id === 'w_known';
      },
      ['gpu'],
    );
    assert.deepEqual(reaped.sort(), [`gpu/${podName('w_gpuorphan')}`, `${NS}/${podName('w_orphan')}`]);
    assert.deepEqual(asked.sort(), ['w_gpuorphan', 'w_known', 'w_orphan'], 'only pods of this installation');
    await h.fake.waitForGone('secrets', NS, orphan.metadata.name);
    assert.deepEqual(
      h.fake
        .list('pods')
        .map((p) => p.metadata.name)
        .sort(),
      [podName('w_elsewhere'), podName('w_known'), podName('w_unmanaged')].sort(),
    );
  });

  test('close leaves pods running by default; with stopWorkersOnClose it deletes them', async (t) => {
    const h = await setup(t);
    const kept = launch();
    await started(h, kept);
    await h.driver.close();
    assert.ok(h.fake.pod(NS, podName(kept.workerId)));

    const stopping = h.another({ stopWorkersOnClose: true, closeGraceMs: 1000 });
    const l = launch();
    const { pod } = JSON.parse((await stopping.start(l)).handle) as { pod: string };
    h.fake.runPod(NS, pod);
    await stopping.close();
    assert.equal(h.fake.pod(NS, pod), undefined);
  });

  test('a stop during start waits for the pod, then deletes it', async (t) => {
    const h = await setup(t);
    const l = launch();
    const starting = h.driver.start(l);
    const stopping = h.driver.stop(l.workerId, 1000);
    await starting;
    await stopping;
    assert.equal(h.fake.pod(NS, podName(l.workerId)), undefined);
    assert.equal((await h.exit(l.workerId)).expected, true);
  });

  test('the driver uses exactly the permissions it declares (the Role grants these)', async (t) => {
    const h = await setup(t);
    const used = new Map<string, Set<KubeVerb>>();
    const a = launch();
    const b = launch();
    const { handle } = await h.driver.start(a);
    await h.driver.start(b);
    h.fake.runPod(NS, podName(a.workerId));
    await h.driver.stop(b.workerId, 1000);
    const next = h.another();
    await next.isAlive(a.workerId, handle);
    await next.reapOrphans(async () => true);
    await next.reap(a.workerId, handle);
    for (const r of h.fake.requests) {
      assert.notEqual(r.status, 403, `${r.verb} ${r.resource} was refused`);
      if (r.resource && r.verb !== 'unknown')
        used.set(r.resource, (used.get(r.resource) ?? new Set()).add(r.verb));
    }
    assert.deepEqual(
      Object.fromEntries([...used].map(([k, v]) => [k, [...v].sort()])),
      Object.fromEntries(Object.entries(REQUIRED_PERMISSIONS).map(([k, v]) => [k, [...v].sort()])),
    );
  });
});

describe('KubernetesDriver errors say what to fix', () => {
  const rejects = async (p: Promise<unknown>, status: number | null, message: RegExp) => {
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof KubernetesApiError, String(err));
      assert.equal(err.status, status);
      assert.match(err.message, message);
      return true;
    });
  };

  test('403: the service account may not create secrets; the pod made before is deleted again', async (t) => {
    const h = await setup(t, { fake: { allow: { ...REQUIRED_PERMISSIONS, secrets: ['delete'] } } });
    const l = launch();
    await rejects(
      h.driver.start(l),
      403,
      /Usher may not create secrets in namespace "workers" \(403 Forbidden: secrets is forbidden: User "system:serviceaccount:usher:usher" cannot create resource "secrets".*grant "create" on secrets.*deploy\/kubernetes\/rbac\.yaml/,
    );
    await h.fake.waitForGone('pods', NS, podName(l.workerId));
    assert.equal(h.exits.length, 0, 'a failed start is reported by throwing, not as an exit');
  });

  test('403: the service account may not list pods', async (t) => {
    const h = await setup(t, { fake: { allow: { pods: ['create'], secrets: ['create'] } } });
    await rejects(h.driver.start(launch()), 403, /Usher may not list pods in namespace "workers"/);
  });

  test('404: the namespace does not exist', async (t) => {
    const h = await setup(t);
    await rejects(
      h.driver.start(launch({ namespace: 'nowhere' })),
      404,
      /namespace "nowhere" does not exist.*fix kubernetes\.namespace or worker\.namespace of project "agents"/,
    );
  });

  test('409: a pod of that name exists already', async (t) => {
    const h = await setup(t);
    const l = launch();
    h.fake.seed<PodObject>({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: podName(l.workerId), namespace: NS },
      spec: { containers: [{ name: 'x', image: 'x:1' }] },
      status: { phase: 'Pending' },
    });
    await rejects(h.driver.start(l), 409, /pod "usher-w-test\d+" already exists in namespace "workers"/);
  });

  test('422: the API rejects the pod spec, naming the field', async (t) => {
    const h = await setup(t);
    await rejects(
      h.driver.start(launch({ resources: { limits: { memory: 'lots' } } })),
      422,
      /rejected the worker's pod of project "agents" \(422 Invalid: spec\.containers\[0\]\.resources\.limits\[memory\]: Invalid value: "lots".*check worker\.image/,
    );
    await rejects(
      h.driver.start(launch({ tolerations: [{ key: 'gpu', operator: 'Sometimes' }] })),
      422,
      /spec\.tolerations\[0\]\.operator: Unsupported value: "Sometimes"/,
    );
  });

  test('401: the credentials are not accepted', async (t) => {
    const h = await setup(t);
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(h.fake.kubeconfig(NS, 'a-revoked-token'));
    await rejects(
      h.another({ kubeConfig }).start(launch()),
      401,
      /did not accept Usher's credentials \(401 Unauthorized\)/,
    );
  });

  test('the API cannot be reached', async (t) => {
    const h = await setup(t);
    const url = h.fake.url;
    await h.fake.close();
    await rejects(
      h.driver.start(launch()),
      null,
      new RegExp(
        `cannot reach the Kubernetes API at ${url.replaceAll('.', '\\.')} to list pods.*ECONNREFUSED.*kubernetes\\.kubeconfig`,
      ),
    );
  });

  test('a worker spec the driver cannot use is refused before any API call, naming the key', async (t) => {
    const h = await setup(t);
    await assert.rejects(h.driver.start(launch({ image: '' })), /worker\.image must name a container image/);
    await assert.rejects(
      h.driver.start(launch({ tolerations: [{ key: 'gpu', opertor: 'Exists' }] })),
      /worker\.tolerations\[0\]\.opertor is not a toleration field/,
    );
    await assert.rejects(
      h.driver.start(launch({ resources: { limit: { cpu: '1' } } })),
      /worker\.resources\.limit is not known \(known: limits, requests\)/,
    );
    assert.equal(h.fake.requests.length, 0);
  });
});

describe('names', () => {
  test('pod names and label values are what Kubernetes accepts', () => {
    assert.equal(podName('w_0mk1abcde0000a1b2c3d4'), 'usher-w-0mk1abcde0000a1b2c3d4');
    const odd = podName('W/Weird ID_'.repeat(10));
    assert.match(odd, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    assert.notEqual(odd, podName('W/Weird ID_'.repeat(11)), 'shortened names stay apart');
    assert.equal(labelValue('agents'), 'agents');
    assert.match(labelValue('ends-with-dash-'), /^ends-with-dash-[0-9a-f]{8}$/);
    assert.match(labelValue('x'.repeat(80)), /^x{54}-[0-9a-f]{8}$/);
  });

  test('${USHER_…} in a command becomes $(USHER_…), which the kubelet expands from the secret', () => {
    assert.equal(toKubernetesVars('-url=${USHER_SIGNALLING_URL}'), '-url=$(USHER_SIGNALLING_URL)');
    assert.equal(toKubernetesVars('${HOME}'), '${HOME}');
  });

  test('rebaseUrl keeps the endpoint and the query', () => {
    assert.equal(
      rebaseUrl('wss://usher.example.com/base/workers/signalling?token=t', 'http://usher.usher.svc:8080'),
      'ws://usher.usher.svc:8080/workers/signalling?token=t',
    );
    assert.equal(
      rebaseUrl('ws://a/workers/ws', 'https://b.example.com/usher/'),
      'wss://b.example.com/usher/workers/ws',
    );
  });
});
