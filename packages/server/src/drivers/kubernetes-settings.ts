// The server-level Kubernetes driver settings (`kubernetes:` in the config file), validated once with messages
// that name the key to fix, then frozen. Nothing here loads the Kubernetes client: the driver (kubernetes.ts)
// is imported only by a server that has these settings.

export interface KubernetesSettings {
  /** namespace of worker pods and their secrets, unless a project's `worker.namespace` names another */
  namespace: string;
  /**
   * How Usher reaches the Kubernetes API. `inCluster`: the service account of the pod Usher runs in.
   * `kubeconfig`: a kubeconfig file (with `context`, one of its contexts). Neither: in-cluster when Usher runs
   * in a pod (KUBERNETES_SERVICE_HOST is set), otherwise the files of $KUBECONFIG (merged as kubectl merges
   * them) or ~/.kube/config.
   */
  inCluster?: boolean;
  kubeconfig?: string;
  context?: string;
  /**
   * The URL worker pods use to reach Usher, e.g. `http://usher.usher.svc.cluster.local:8080`; their
   * USHER_WORKER_URL and USHER_SIGNALLING_URL point there. Default: the server's public URL.
   */
  usherUrl?: string;
  /**
   * Names this Usher installation in the labels of its pods: start-up reaps orphans only among pods with this
   * label, so installations (databases) that share a namespace leave each other's pods alone. Default `usher`.
   */
  installation: string;
  /** secrets with registry credentials, for images in a private registry */
  imagePullSecrets?: readonly string[];
  /** the service account worker pods run as; default: the namespace's `default`, with no API token mounted */
  serviceAccountName?: string;
}

/** Everything the driver asks of the API, per resource (core API group); the Role in deploy/ grants exactly this. */
export const REQUIRED_PERMISSIONS = {
  pods: ['get', 'list', 'watch', 'create', 'delete'],
  secrets: ['create', 'delete'],
} as const;

export class KubernetesConfigError extends Error {
  override name = 'KubernetesConfigError';
}

const KEYS = [
  'namespace',
  'inCluster',
  'kubeconfig',
  'context',
  'usherUrl',
  'installation',
  'imagePullSecrets',
  'serviceAccountName',
];

/** A DNS-1123 label: what Kubernetes accepts as a namespace or service account name. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A DNS-1123 subdomain: what Kubernetes accepts as a secret name. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A label value (the installation is one). */
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/**
 * Checks raw settings (parsed YAML, env) and returns them frozen. `key` is the path to name in messages,
 * `kubernetes` by default.
 */
export function parseKubernetesSettings(input: unknown, key = 'kubernetes'): Readonly<KubernetesSettings> {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new KubernetesConfigError(`${key} must be an object with at least a namespace`);
  const raw = input as Record<string, unknown>;
  for (const k of Object.keys(raw)) {
    if (!KEYS.includes(k))
      throw new KubernetesConfigError(`${key}.${k} is not a Kubernetes setting (known: ${KEYS.join(', ')})`);
  }
  const namespace = requiredString(raw, 'namespace', key);
  if (!DNS_LABEL.test(namespace))
    throw new KubernetesConfigError(
      `${key}.namespace "${namespace}" is not a Kubernetes namespace name (lower-case letters, digits and dashes, at most 63)`,
    );
  const settings: KubernetesSettings = { namespace, installation: 'usher' };

  if (raw.inCluster !== undefined) {
    if (typeof raw.inCluster !== 'boolean')
      throw new KubernetesConfigError(`${key}.inCluster must be true or false`);
    settings.inCluster = raw.inCluster;
  }
  const kubeconfig = optionalString(raw, 'kubeconfig', key);
  if (kubeconfig !== undefined) {
    if (settings.inCluster)
      throw new KubernetesConfigError(
        `${key}: give either inCluster: true or kubeconfig, not both (inCluster uses the pod's service account)`,
      );
    settings.kubeconfig = kubeconfig;
  }
  const context = optionalString(raw, 'context', key);
  if (context !== undefined) {
    if (settings.inCluster)
      throw new KubernetesConfigError(
        `${key}.context names a kubeconfig context: it has no use with inCluster`,
      );
    settings.context = context;
  }

  const usherUrl = optionalString(raw, 'usherUrl', key);
  if (usherUrl !== undefined) {
    let protocol: string;
    try {
      protocol = new URL(usherUrl).protocol;
    } catch {
      throw new KubernetesConfigError(
        `${key}.usherUrl is not a URL: "${usherUrl}" (e.g. http://usher.usher.svc.cluster.local:8080)`,
      );
    }
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(protocol))
      throw new KubernetesConfigError(`${key}.usherUrl must be http(s):// or ws(s):// (got "${usherUrl}")`);
    settings.usherUrl = usherUrl.replace(/\/+$/, '');
  }

  const installation = optionalString(raw, 'installation', key);
  if (installation !== undefined) {
    if (!LABEL_VALUE.test(installation))
      throw new KubernetesConfigError(
        `${key}.installation "${installation}" must be a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
      );
    settings.installation = installation;
  }

  if (raw.imagePullSecrets !== undefined) {
    const list = raw.imagePullSecrets;
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && DNS_SUBDOMAIN.test(s)))
      throw new KubernetesConfigError(`${key}.imagePullSecrets must be a list of secret names`);
    settings.imagePullSecrets = Object.freeze([...(list as string[])]);
  }
  const serviceAccountName = optionalString(raw, 'serviceAccountName', key);
  if (serviceAccountName !== undefined) {
    if (!DNS_SUBDOMAIN.test(serviceAccountName))
      throw new KubernetesConfigError(
        `${key}.serviceAccountName "${serviceAccountName}" is not a service account name`,
      );
    settings.serviceAccountName = serviceAccountName;
  }
  return Object.freeze(settings);
}

function requiredString(raw: Record<string, unknown>, name: string, key: string): string {
  const value = optionalString(raw, name, key);
  if (value === undefined) throw new KubernetesConfigError(`${key}.${name} is required`);
  return value;
}

function optionalString(raw: Record<string, unknown>, name: string, key: string): string | undefined {
  const value = raw[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string')
    throw new KubernetesConfigError(`${key}.${name} must be a string (got ${typeof value})`);
  if (value.trim() === '') throw new KubernetesConfigError(`${key}.${name} is empty`);
  return value.trim();
}
