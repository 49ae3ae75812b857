// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the ${USHER_…} placeholders of worker commands are tested here
// Tests of the Kubernetes driver with the official client against the in-process fake API server: pods and
// secrets, phases and crashes, stop with grace then force, watch recovery, adoption and reaping, API errors.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
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
  loadKubeConfig,
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
  /** resolves with the first progress report of a worker that satisfies pred (one reported already, or the next) */
  progressed(workerId: string, pred: (p: KubernetesProgress) => boolean): Promise<KubernetesProgress>;
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
  const progressWaiters = new Set<(p: KubernetesProgress) => void>();
  driver.onProgress((p) => {
    progress.push(p);
    for (const waiter of [...progressWaiters]) waiter(p);
  });
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
    progressed: (workerId, pred) => {
      const match = (p: KubernetesProgress) => p.workerId === workerId && pred(p);
      const known = progress.find(match);
      if (known) return Promise.resolve(known);
      return new Promise((resolve) => {
        const waiter = (p: KubernetesProgress) => {
          if (!match(p)) return;
          progressWaiters.delete(waiter);
          resolve(p);
        };
        progressWaiters.add(waiter);
      });
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

/** A worker pod running, left behind by a driver that closed (as by a server that stopped): its launch, handle and pod. */
async function leftRunning(h: Harness): Promise<{ l: WorkerLaunch; handle: string; pod: string }> {
  const l = launch();
  const { handle } = await h.driver.start(l);
  const pod = podName(l.workerId);
  h.fake.runPod(NS, pod);
  await h.driver.close();
  return { l, handle, pod };
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

  test('a pod deleted by someone else whose container SIGTERM ends (143, Failed, then gone) was "deleted, not by Usher"', async (t) => {
    // as on a real cluster: the kubelet stops the container with SIGTERM, which kills a program that does not
    // handle it (143); the pod goes Failed, then disappears
    const h = await setup(t, { fake: { stopExitCode: 143 } });
    const l = launch();
    const { pod } = await started(h, l);
    h.fake.runPod(NS, pod);
    const failed = h.fake.waitFor('pods', (p) => p.metadata.name === pod && p.status.phase === 'Failed');
    h.fake.deletePod(NS, pod); // kubectl delete pod: its own grace period
    assert.equal((await failed).status.containerStatuses?.[0]?.state.terminated?.exitCode, 143);
    const exit = await h.exit(l.workerId);
    assert.equal(exit.expected, false);
    assert.equal(exit.code, 143);
    assert.equal(exit.error, 'the worker pod was deleted, not by Usher');

    // Usher's own stop ends the same way: an expected exit, no error
    const stopped = launch();
    const s = await started(h, stopped);
    h.fake.runPod(NS, s.pod);
    await h.driver.stop(stopped.workerId, 1000);
    assert.deepEqual(await h.exit(stopped.workerId), {
      workerId: stopped.workerId,
      code: 143,
      signal: null,
      expected: true,
    });
  });

  test('a pull that fails for a while (a throttling registry) is waited out: back-off is not a failure', async (t) => {
    const h = await setup(t);
    const l = launch({ image: 'registry.example.com/agent:1.2' });
    const { pod } = await started(h, l);
    const image = '"registry.example.com/agent:1.2"';
    h.fake.waitContainer(
      NS,
      pod,
      'ErrImagePull',
      `failed to pull and unpack image ${image}: unexpected status from GET request: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit`,
    );
    h.fake.waitContainer(NS, pod, 'ImagePullBackOff', `Back-off pulling image ${image}`);
    h.fake.waitContainer(
      NS,
      pod,
      'ErrImagePull',
      `failed to pull and unpack image ${image}: failed to do request: dial tcp 10.0.0.9:443: i/o timeout`,
    );
    h.fake.waitContainer(NS, pod, 'ImagePullBackOff', `Back-off pulling image ${image}`);
    h.fake.runPod(NS, pod); // the next pull went through
    const first = await Promise.race([
      h.exit(l.workerId),
      h.progressed(l.workerId, (p) => p.step === 'running'),
    ]);
    assert.ok('step' in first, `no exit: the pod ran in the end (${JSON.stringify(first)})`);
    assert.deepEqual(
      h.progress.filter((p) => p.step === 'waiting').map((p) => p.reason),
      ['ErrImagePull', 'ImagePullBackOff', 'ErrImagePull', 'ImagePullBackOff'],
    );
    assert.equal(h.exits.length, 0);
  });

  for (const refused of [
    {
      what: 'an image that does not exist',
      waiting: ['ErrImagePull', 'failed to resolve reference "registry.example.com/missing:9": not found'],
    },
    { what: 'an unknown manifest', waiting: ['ErrImagePull', 'manifest unknown: manifest unknown'] },
    {
      what: 'a registry that refuses the credentials',
      waiting: ['ErrImagePull', 'failed to authorize: failed to fetch oauth token: 401 Unauthorized'],
    },
    {
      what: 'a private image without credentials (told in a back-off)',
      waiting: [
        'ImagePullBackOff',
        'Back-off pulling image "registry.example.com/missing:9": ErrImagePull: pull access denied, repository does not exist or may require authorization',
      ],
    },
    {
      what: 'a registry that forbids the pull',
      waiting: ['ErrImagePull', 'unexpected status code 403 Forbidden: access forbidden'],
    },
    { what: 'an image name that is not one', waiting: ['InvalidImageName', "couldn't parse image name"] },
    { what: 'an image that may not be pulled', waiting: ['ErrImageNeverPull', 'image is not present'] },
  ] as const) {
    test(`${refused.what} ends the start with a message naming the image; the pod is deleted`, async (t) => {
      const h = await setup(t);
      const l = launch({ image: 'registry.example.com/missing:9' });
      const { pod } = await started(h, l);
      const [reason, message] = refused.waiting;
      h.fake.waitContainer(NS, pod, reason, message);
      // the driver either ends the start or reports the pod as waiting: the first that comes tells which
      const first = await Promise.race([
        h.exit(l.workerId),
        h.progressed(l.workerId, (p) => p.step === 'waiting'),
      ]);
      assert.ok(!('step' in first), `an exit, not a wait (${JSON.stringify(first)})`);
      const exit = first;
      assert.equal(exit.expected, false);
      assert.match(exit.error ?? '', new RegExp(`${reason} for image "registry\\.example\\.com/missing:9"`));
      assert.match(exit.error ?? '', /kubernetes\.imagePullSecrets/);
      await h.fake.waitForGone('pods', NS, pod);
    });
  }

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
    const { l, handle, pod } = await leftRunning(h);
    h.fake.completePod(NS, pod, 0);

    const next = h.another();
    const exits: WorkerExit[] = [];
    next.onExit((e) => exits.push(e));
    assert.equal(await next.isAlive(l.workerId, handle), false);
    await h.fake.waitForGone('pods', NS, pod);
    await h.fake.waitForGone('secrets', NS, pod);
    assert.deepEqual(exits, [], 'the engine handles a worker that is not alive as an exit itself');
  });

  test('a pod adopted while the API cannot be reached is watched once it can (with backoff on the clock)', async (t) => {
    const h = await setup(t);
    const { l, handle, pod } = await leftRunning(h);

    const next = h.another();
    const reported = new Promise<WorkerExit>((resolve) => next.onExit(resolve));
    const lists = () => h.fake.requests.filter((r) => r.verb === 'list').length;
    h.fake.failNext('list', 'pods', 'reset'); // the API out of reach as the server starts
    const before = lists();
    assert.equal(await next.isAlive(l.workerId, handle), true, 'taken as alive for now');
    assert.equal(h.fake.watchers(NS), 0);

    h.fake.failNext('list', 'pods', 503); // still out of reach at the first try again
    await h.clock.advance(999);
    assert.equal(lists(), before + 1, 'not before 1 s');
    await h.clock.advance(1);
    assert.equal(lists(), before + 2, 'tried again after 1 s');
    assert.equal(h.fake.watchers(NS), 0);
    await h.clock.advance(1_999);
    assert.equal(lists(), before + 2, 'then after 2 s more');
    await h.clock.advance(1);
    assert.equal(lists(), before + 3);
    assert.equal(h.fake.watchers(NS), 1, 'the namespace is watched');

    h.fake.failPod(NS, pod, 4);
    const exit = await reported;
    assert.equal(exit.workerId, l.workerId);
    assert.equal(exit.code, 4);
    await h.clock.advance(60_000);
    assert.equal(lists(), before + 3, 'no more tries once it is watched');
  });

  test('the watch retries of an adopted pod end when the driver closes', async (t) => {
    const h = await setup(t);
    const l = launch();
    const { handle } = await h.driver.start(l);
    await h.driver.close();
    const next = h.another();
    h.fake.failNext('list', 'pods', 503);
    assert.equal(await next.isAlive(l.workerId, handle), true);
    assert.equal(h.clock.pending, 1, 'a try again is armed');
    await next.close();
    assert.equal(h.clock.pending, 0);
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

  test("another server's driver stops a worker in a project's own namespace by its stored handle", async (t) => {
    const h = await setup(t);
    const l = launch({ namespace: 'gpu' });
    const { handle } = await h.driver.start(l);
    const { pod } = JSON.parse(handle) as { pod: string };
    h.fake.runPod('gpu', pod);
    const other = h.another();
    // without the handle it looks where it knows to look, and finds nothing
    await other.stop(l.workerId, 1000);
    assert.ok(h.fake.pod('gpu', pod), 'not found in the namespaces that driver knows');
    await other.stop(l.workerId, 1000, handle);
    assert.equal(h.fake.pod('gpu', pod), undefined);
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

  for (const answer of [500, 504, 'reset'] as const) {
    test(`a pod made by the API server whose create then failed (${answer}) is deleted before the start fails`, async (t) => {
      const h = await setup(t);
      const l = launch();
      const name = podName(l.workerId);
      h.fake.failNext('create', 'pods', answer, 'etcdserver: request timed out', { committed: true });
      await rejects(
        h.driver.start(l),
        answer === 'reset' ? null : answer,
        answer === 'reset'
          ? /cannot reach the Kubernetes API .* to create pod "usher-w-test\d+"/
          : new RegExp(`create pod "${name}" in namespace "workers" failed \\(${answer}`),
      );
      assert.equal(h.fake.pod(NS, name), undefined, 'no pod left to hold its node');
      assert.equal(h.fake.secret(NS, name), undefined);
      assert.deepEqual(
        deletes(h, name).map((r) => [r.status, r.query.gracePeriodSeconds]),
        [[200, '0']],
      );
      assert.equal(h.exits.length, 0, 'a failed start is reported by throwing, not as an exit');
    });
  }

  test('a create that failed before anything was made: the delete finds nothing (404), the start fails as it did', async (t) => {
    const h = await setup(t);
    const l = launch();
    const name = podName(l.workerId);
    h.fake.failNext('create', 'pods', 500, 'etcdserver: leader changed');
    await rejects(h.driver.start(l), 500, /create pod "usher-w-test\d+" in namespace "workers" failed \(500/);
    assert.deepEqual(
      deletes(h, name).map((r) => r.status),
      [404],
    );
  });

  test('a pod whose failed create goes through after the delete that followed it is deleted when it shows up', async (t) => {
    const h = await setup(t);
    const failedStart = async () => {
      const l = launch();
      const name = podName(l.workerId);
      h.fake.failNext('create', 'pods', 504, 'etcdserver: request timed out');
      await rejects(
        h.driver.start(l),
        504,
        /create pod "usher-w-test\d+" in namespace "workers" failed \(504/,
      );
      assert.deepEqual(
        deletes(h, name).map((r) => r.status),
        [404],
        'the delete came before the pod',
      );
      // the API server commits the create after all
      return () =>
        h.fake.seed<PodObject>({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name,
            namespace: NS,
            labels: {
              [LABELS.managedBy]: 'usher',
              [LABELS.installation]: 'test',
              [LABELS.worker]: l.workerId,
            },
          },
          spec: { containers: [{ name: 'worker', image: 'registry.example.com/agent:1.0' }] },
          status: { phase: 'Pending' },
        });
    };
    const late = await failedStart();
    const pod = late();
    await h.fake.waitForGone('pods', NS, pod.metadata.name);
    // past the cleanup limit, a pod that shows up is left to the start-up reap
    const tooLate = await failedStart();
    await h.clock.advance(10 * 60_000);
    const inTime = await failedStart();
    const kept = tooLate();
    const gone = inTime();
    // the watch reports pods in order: once the second is gone, the first was seen, and left alone
    await h.fake.waitForGone('pods', NS, gone.metadata.name);
    assert.ok(h.fake.pod(NS, kept.metadata.name), 'left alone');
  });

  test('a secret made by the API server whose create then failed goes with its pod', async (t) => {
    const h = await setup(t);
    const l = launch();
    const name = podName(l.workerId);
    h.fake.failNext('create', 'secrets', 'reset', undefined, { committed: true });
    await rejects(h.driver.start(l), null, /cannot reach the Kubernetes API .* to create secret/);
    assert.equal(h.fake.pod(NS, name), undefined);
    await h.fake.waitForGone('secrets', NS, name);
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
    // as on the API server, only the create said so: the list before it was an empty 200
    assert.deepEqual(
      h.fake.requests.filter((r) => r.namespace === 'nowhere').map((r) => `${r.verb} ${r.status}`),
      ['list 200', 'watch 200', 'create 404'],
    );
  });

  test('404 on a list is not taken for a missing namespace (a list there is an empty 200)', async (t) => {
    const h = await setup(t);
    h.fake.failNext('list', 'pods', 404, 'the server could not find the requested resource');
    await assert.rejects(h.driver.start(launch()), (err: unknown) => {
      assert.ok(err instanceof KubernetesApiError);
      assert.equal(err.status, 404);
      assert.match(
        err.message,
        /list pods in namespace "workers" failed \(404 NotFound: the server could not/,
      );
      assert.doesNotMatch(err.message, /does not exist/);
      return true;
    });
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
    assert.ok(h.fake.pod(NS, podName(l.workerId)), 'a pod this start did not make is left alone');
    assert.equal(deletes(h, podName(l.workerId)).length, 0);
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

describe('loadKubeConfig', () => {
  test('$KUBECONFIG with several files: merged as kubectl merges them', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'usher-kubeconfig-'));
    const saved = process.env.KUBECONFIG;
    t.after(async () => {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
      await rm(dir, { recursive: true, force: true });
    });
    const cluster = (name: string, server: string) => ({
      name,
      cluster: { server, 'certificate-authority': 'ca.crt' },
    });
    const context = (name: string) => ({ name, context: { cluster: name, user: name } });
    const first = join(dir, 'config');
    await writeFile(
      first,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [cluster('dev', 'https://dev.example.com:6443')],
        users: [{ name: 'dev', user: { token: 'dev-token' } }],
        contexts: [context('dev')],
        'current-context': 'dev',
      }),
    );
    await mkdir(join(dir, 'prod'));
    const second = join(dir, 'prod', 'config');
    await writeFile(
      second,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          cluster('dev', 'https://not-this-one.example.com'),
          cluster('prod', 'https://prod.example.com'),
        ],
        users: [{ name: 'prod', user: { token: 'prod-token' } }],
        contexts: [context('prod')],
        'current-context': 'prod',
      }),
    );
    process.env.KUBECONFIG = [first, join(dir, 'missing'), '', second].join(delimiter);
    const settings = { namespace: 'workers', installation: 'usher', inCluster: false };

    const kc = loadKubeConfig(settings);
    assert.deepEqual(
      kc.getContexts().map((c) => c.name),
      ['dev', 'prod'],
      'every file, a missing one skipped',
    );
    assert.equal(kc.getCurrentContext(), 'dev', 'the first file that sets the current context wins');
    assert.equal(kc.getCurrentCluster()?.server, 'https://dev.example.com:6443', 'the first of a name wins');
    assert.equal(kc.getCurrentCluster()?.caFile, join(dir, 'ca.crt'));

    const prod = loadKubeConfig({ ...settings, context: 'prod' });
    assert.equal(prod.getCurrentCluster()?.server, 'https://prod.example.com');
    assert.equal(prod.getCurrentCluster()?.caFile, join(dir, 'prod', 'ca.crt'), 'relative to its own file');
    assert.equal(prod.getCurrentUser()?.token, 'prod-token');

    assert.throws(
      () => loadKubeConfig({ ...settings, context: 'staging' }),
      (err: Error) =>
        err.message.includes('kubernetes.context "staging" is not in $KUBECONFIG (') &&
        err.message.includes(second) &&
        err.message.endsWith('(it has: dev, prod)'),
    );
    process.env.KUBECONFIG = join(dir, 'missing');
    assert.throws(() => loadKubeConfig(settings), /no kubeconfig at .*missing \(from \$KUBECONFIG\)/);
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
