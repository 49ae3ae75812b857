// The deployment files in deploy/, checked offline. Every Kubernetes manifest is validated against Kubernetes'
// own JSON schemas (the kubernetes-models package: validators generated from the API server's OpenAPI document)
// and strictly — a field the schema does not know is an error, as with kubectl's default server-side field
// validation. Then how the pieces fit: selectors, ports, probes, RBAC against what the driver uses, the config
// file against the CLI's own resolution, and the image against the manifests.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { REQUIRED_PERMISSIONS } from '@usher/server';
import { parseAllDocuments } from 'yaml';
import { resolveConfig } from '../src/config.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const MANIFESTS = join(DEPLOY, 'kubernetes');

type Obj = Record<string, unknown>;
interface Doc {
  file: string;
  object: Obj;
}

/** Every YAML document of deploy/kubernetes, with the file it is in. */
function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of readdirSync(MANIFESTS)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    for (const d of parseAllDocuments(readFileSync(join(MANIFESTS, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${file} is valid YAML`);
      const object = d.toJS() as Obj | null;
      if (object) docs.push({ file, object });
    }
  }
  return docs;
}

const docs = loadDocs();
const kubernetesObjects = docs.filter((d) => d.object.kind !== 'Kustomization');
const find = (kind: string, name?: string): Obj => {
  const d = docs.find(
    (x) => x.object.kind === kind && (!name || (x.object.metadata as Obj | undefined)?.name === name),
  );
  assert.ok(d, `a ${kind}${name ? ` named ${name}` : ''} in deploy/kubernetes`);
  return d.object;
};

interface SchemaError {
  instancePath: string;
  message?: string;
}
type Validate = (object: Obj) => SchemaError[];

/** The kubernetes-models validator of an object's apiVersion and kind. */
async function validatorFor(object: Obj): Promise<Validate> {
  const apiVersion = String(object.apiVersion);
  const kind = String(object.kind);
  const module = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, unknown>;
  const Model = module[kind] as (new (data: Obj) => { validate(): void }) | undefined;
  assert.ok(Model, `kubernetes-models knows ${apiVersion} ${kind}`);
  return (o) => {
    try {
      new Model(o).validate();
      return [];
    } catch (err) {
      const errors = (err as { errors?: SchemaError[] }).errors;
      if (!errors) throw err;
      return errors;
    }
  };
}

/**
 * Schema violations of an object, plus the fields the schema does not know. A field is known when giving it a
 * value of an impossible type (an array for a scalar or an object, `true` for an array) is an error at its path:
 * an unknown field is accepted whatever its value.
 */
function violations(validate: Validate, object: Obj): string[] {
  const found = validate(object).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
  for (const path of leafAndNodePaths(object)) {
    const mutated = structuredClone(object);
    const parent = path.slice(0, -1).reduce<unknown>((o, k) => (o as Obj)[k], mutated) as Obj;
    const last = path.at(-1)!;
    parent[last] = Array.isArray(parent[last]) ? true : [];
    const pointer = `/${path.map((p) => String(p).replaceAll('~', '~0').replaceAll('/', '~1')).join('/')}`;
    if (!validate(mutated).some((e) => e.instancePath === pointer))
      found.push(`${path.join('.')}: not a field of ${object.apiVersion} ${object.kind}`);
  }
  return found;
}

/** Paths to every value of an object (object keys and array indexes), outermost first. */
function leafAndNodePaths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const paths: (string | number)[][] = [];
  if (Array.isArray(value))
    value.forEach((v, i) => {
      paths.push([...prefix, i], ...leafAndNodePaths(v, [...prefix, i]));
    });
  else if (typeof value === 'object' && value !== null)
    for (const [k, v] of Object.entries(value))
      paths.push([...prefix, k], ...leafAndNodePaths(v, [...prefix, k]));
  return paths.filter((p) => typeof p.at(-1) === 'string');
}

const dir = mkdtempSync(join(tmpdir(), 'usher-deploy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('deploy/kubernetes', () => {
  test('every manifest is a valid Kubernetes object, with no field its schema does not know', async () => {
    assert.deepEqual(kubernetesObjects.map((d) => `${d.object.apiVersion} ${d.object.kind}`).sort(), [
      'apps/v1 Deployment',
      'policy/v1 PodDisruptionBudget',
      'rbac.authorization.k8s.io/v1 Role',
      'rbac.authorization.k8s.io/v1 RoleBinding',
      'v1 ConfigMap',
      'v1 Namespace',
      'v1 Secret',
      'v1 Service',
      'v1 ServiceAccount',
    ]);
    for (const { file, object } of kubernetesObjects) {
      const validate = await validatorFor(object);
      assert.deepEqual(violations(validate, object), [], `${file}: ${object.kind}`);
    }
  });

  test('the check finds misspelt fields and wrong types (it can fail)', async () => {
    const deployment = find('Deployment');
    const validate = await validatorFor(deployment);
    const bad = structuredClone(deployment) as {
      spec: Obj & { template: { spec: { containers: Obj[] } } };
    };
    bad.spec.replcas = 2;
    const container = bad.spec.template.spec.containers[0]!;
    container.readinessprobe = container.readinessProbe;
    (container.ports as Obj[])[0]!.containerPort = '8080';
    const found = violations(validate, bad as unknown as Obj);
    assert.ok(found.includes('spec.replcas: not a field of apps/v1 Deployment'), found.join('\n'));
    assert.ok(
      found.includes('spec.template.spec.containers.0.readinessprobe: not a field of apps/v1 Deployment'),
      found.join('\n'),
    );
    assert.ok(
      found.includes('/spec/template/spec/containers/0/ports/0/containerPort must be integer'),
      found.join('\n'),
    );
  });

  test('kustomization.yaml applies every manifest but the example Secret, all in namespace usher', () => {
    const k = find('Kustomization');
    const files = readdirSync(MANIFESTS).filter(
      (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !f.endsWith('.example.yaml'),
    );
    assert.deepEqual([...(k.resources as string[])].sort(), files.sort());
    assert.equal(k.namespace, 'usher');
    for (const { file, object } of kubernetesObjects) {
      const meta = object.metadata as Obj;
      if (object.kind === 'Namespace') assert.equal(meta.name, 'usher');
      else assert.equal(meta.namespace, 'usher', `${file}: ${object.kind} ${meta.name}`);
    }
    const images = k.images as { name: string }[];
    const container = podSpec().containers[0]!;
    assert.ok(
      images.some((i) => i.name === container.image),
      'the image override names the image of the Deployment',
    );
  });

  test('the pieces fit: selectors, the Service port, probes on /healthz and /readyz, the service account, config and secret', () => {
    const deployment = find('Deployment') as { spec: { selector: { matchLabels: Obj }; template: Obj } };
    const podLabels = (deployment.spec.template.metadata as Obj).labels as Obj;
    const matches = (selector: Obj) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    assert.ok(matches(deployment.spec.selector.matchLabels), 'the Deployment selects its own pods');
    const service = find('Service') as { spec: { selector: Obj; ports: Obj[] } };
    assert.ok(matches(service.spec.selector), 'the Service selects the pods');
    const pdb = find('PodDisruptionBudget') as { spec: { selector: { matchLabels: Obj } } };
    assert.ok(matches(pdb.spec.selector.matchLabels), 'the PodDisruptionBudget covers the pods');
    // worker pods carry managed-by and component: worker, never the server's labels
    assert.notEqual(podLabels['app.kubernetes.io/component'], 'worker');

    const spec = podSpec();
    const container = spec.containers[0]!;
    const ports = container.ports as { name: string; containerPort: number }[];
    assert.ok(
      ports.some((p) => p.name === service.spec.ports[0]!.targetPort),
      'the Service targets a named port',
    );
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const get = (container[probe] as { httpGet: { path: string; port: string } }).httpGet;
      // readiness goes 503 while a server drains, so the Service stops sending it new connections
      assert.equal(get.path, probe === 'readinessProbe' ? '/readyz' : '/healthz', probe);
      assert.ok(
        ports.some((p) => p.name === get.port),
        `${probe} on a named port`,
      );
    }
    assert.equal(spec.serviceAccountName, (find('ServiceAccount').metadata as Obj).name);

    const mount = (container.volumeMounts as { name: string; mountPath: string }[]).find(
      (m) => m.name === 'config',
    )!;
    const volume = (spec.volumes as { name: string; configMap?: { name: string } }[]).find(
      (v) => v.name === 'config',
    )!;
    assert.equal(volume.configMap?.name, (find('ConfigMap').metadata as Obj).name);
    const configPath = (container.env as { name: string; value?: string }[]).find(
      (e) => e.name === 'USHER_CONFIG',
    )?.value;
    assert.equal(configPath, `${mount.mountPath}/usher.yaml`, 'USHER_CONFIG is the mounted ConfigMap key');
    const secretRef = (container.envFrom as { secretRef?: { name: string } }[])[0]?.secretRef?.name;
    assert.equal(secretRef, (find('Secret').metadata as Obj).name);
    assert.ok(
      Number(spec.terminationGracePeriodSeconds) * 1000 >
        Number(
          (container.env as { name: string; value?: string }[]).find(
            (e) => e.name === 'USHER_DRAIN_TIMEOUT_MS',
          )?.value,
        ),
      'the pod is given longer than the drain to stop',
    );
  });

  test('the Role grants exactly what the Kubernetes driver uses, to the ServiceAccount', () => {
    const role = find('Role') as {
      metadata: Obj;
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    const granted: Record<string, string[]> = {};
    for (const rule of role.rules) {
      assert.deepEqual(rule.apiGroups, [''], 'core API group only');
      for (const r of rule.resources) granted[r] = [...(granted[r] ?? []), ...rule.verbs].sort();
    }
    assert.deepEqual(
      granted,
      Object.fromEntries(Object.entries(REQUIRED_PERMISSIONS).map(([r, verbs]) => [r, [...verbs].sort()])),
    );
    const binding = find('RoleBinding') as { roleRef: Obj; subjects: Obj[] };
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: role.metadata.name,
    });
    const account = find('ServiceAccount').metadata as Obj;
    assert.deepEqual(binding.subjects, [
      { kind: 'ServiceAccount', name: account.name, namespace: account.namespace },
    ]);
  });

  test('usher serve accepts the ConfigMap with the environment the Deployment and the Secret give', () => {
    const configMap = find('ConfigMap') as { data: Record<string, string> };
    const file = join(dir, 'usher.yaml');
    writeFileSync(file, configMap.data['usher.yaml']!);
    const secret = find('Secret') as { stringData: Record<string, string> };
    const env: Record<string, string> = { ...secret.stringData };
    for (const e of podSpec().containers[0]!.env as { name: string; value?: string; valueFrom?: unknown }[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.name === 'USHER_KUBERNETES_NAMESPACE')
        env[e.name] = 'usher'; // the downward API
      else if (e.name === 'USHER_SERVER_ID') env[e.name] = 'usher-5d8f7b9c4-x2x7q';
    }
    const config = resolveConfig({ file, env, flags: {} });
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.port, 8080);
    assert.equal(config.storage.type, 'postgres', 'several servers share PostgreSQL');
    assert.equal(config.sources.storage, 'env USHER_DATABASE_URL');
    assert.equal(config.sources.adminKeys, 'env USHER_ADMIN_KEYS');
    assert.equal(config.sources.secret, 'env USHER_SECRET');
    assert.equal(config.serverId, 'usher-5d8f7b9c4-x2x7q');
    assert.deepEqual(
      { ...config.kubernetes },
      {
        namespace: 'usher',
        installation: 'usher',
        inCluster: true,
        usherUrl: 'http://usher.usher.svc.cluster.local:8080',
      },
    );
    // worker pods dial the Service
    const service = find('Service') as { metadata: Obj; spec: { ports: { port: number }[] } };
    assert.equal(
      new URL(config.kubernetes!.usherUrl!).host,
      `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local:${service.spec.ports[0]!.port}`,
    );
    assert.deepEqual(
      config.projects.map((p) => [p.id, p.worker?.driver]),
      [['agent', 'kubernetes']],
    );
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');

  test('runs the CLI on the Node.js major the project uses, on the port the manifests expect', () => {
    const rootPackage = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    const nodeMajor = /\d+/.exec(rootPackage.devDependencies.node ?? '')?.[0];
    assert.match(dockerfile, new RegExp(`ARG NODE_IMAGE=node:${nodeMajor}-`), 'the same Node.js major');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    const argv = JSON.parse(entrypoint ?? '[]') as string[];
    assert.equal(argv[0], 'node');
    assert.ok(existsSync(join(ROOT, argv[1]!)), `${argv[1]} exists`);
    const container = podSpec().containers[0]!;
    const port = (container.ports as { containerPort: number }[])[0]!.containerPort;
    assert.match(dockerfile, new RegExp(`^EXPOSE ${port}$`, 'm'));
    assert.match(dockerfile, new RegExp(`USHER_PORT=${port}\\b`));
    assert.match(dockerfile, /^USER node$/m, 'not root');
    assert.deepEqual(container.args, ['serve']);
  });

  test('its context leaves out installed modules, builds and databases', () => {
    const ignore = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8').split('\n');
    for (const entry of ['**/node_modules', '**/dist', '.git', '**/*.db'])
      assert.ok(ignore.includes(entry), entry);
  });
});

function podSpec(): { containers: Obj[] } & Obj {
  const deployment = find('Deployment') as { spec: { template: { spec: { containers: Obj[] } & Obj } } };
  return deployment.spec.template.spec;
}
