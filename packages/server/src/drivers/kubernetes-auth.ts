// How the Kubernetes driver authenticates: in-cluster, a kubeconfig file, or the usual defaults.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubernetesConfigError, type KubernetesSettings } from './kubernetes-settings.ts';

/**
 * The KubeConfig of the settings: the pod's service account (inCluster), a kubeconfig file (with an optional
 * context), or — when neither is given — in-cluster inside a pod, else the files of $KUBECONFIG merged as
 * kubectl merges them, or ~/.kube/config.
 */
export function loadKubeConfig(settings: Readonly<KubernetesSettings>): KubeConfig {
  const inPod = !!process.env.KUBERNETES_SERVICE_HOST;
  if (settings.inCluster || (settings.inCluster === undefined && !settings.kubeconfig && inPod)) {
    if (!inPod)
      throw new KubernetesConfigError(
        'kubernetes.inCluster: Usher does not run in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); give kubernetes.kubeconfig instead',
      );
    const kc = new KubeConfig();
    kc.loadFromCluster();
    return kc;
  }
  let where: string;
  let kc: KubeConfig;
  const fromEnv = process.env.KUBECONFIG?.split(delimiter).filter(Boolean) ?? [];
  if (settings.kubeconfig) {
    where = settings.kubeconfig;
    kc = loadFiles([settings.kubeconfig], 'kubernetes.kubeconfig');
  } else if (fromEnv.length) {
    where = `$KUBECONFIG (${fromEnv.join(delimiter)})`;
    kc = loadFiles(fromEnv, '$KUBECONFIG');
  } else {
    where = join(homedir(), '.kube', 'config');
    kc = loadFiles([where], 'kubernetes.kubeconfig');
  }
  if (settings.context) {
    if (!kc.getContextObject(settings.context))
      throw new KubernetesConfigError(
        `kubernetes.context "${settings.context}" is not in ${where} (it has: ${kc
          .getContexts()
          .map((c) => c.name)
          .join(', ')})`,
      );
    kc.setCurrentContext(settings.context);
  }
  if (!kc.getCurrentCluster())
    throw new KubernetesConfigError(`kubernetes.kubeconfig: ${where} has no current context with a cluster`);
  return kc;
}

/**
 * Kubeconfig files merged as kubectl merges $KUBECONFIG: files that do not exist are skipped; the first file
 * that names a cluster, user or context, or sets the current context, wins. Each file is read by the client,
 * which resolves the relative paths in it (certificates, keys) against the file's own folder.
 */
function loadFiles(files: readonly string[], key: string): KubeConfig {
  const present = files.filter((f) => existsSync(f));
  if (present.length === 0)
    throw new KubernetesConfigError(
      `kubernetes: no kubeconfig at ${files.join(', ')}${key === '$KUBECONFIG' ? ' (from $KUBECONFIG)' : ''}; give kubernetes.kubeconfig (a kubeconfig file) or kubernetes.inCluster: true`,
    );
  const [first, ...rest] = present.map((file) => {
    const kc = new KubeConfig();
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new KubernetesConfigError(`${key}: cannot read ${file}: ${(err as Error).message}`);
    }
    return kc;
  });
  const merged = first!;
  for (const kc of rest) {
    for (const cluster of kc.getClusters()) if (!merged.getCluster(cluster.name)) merged.addCluster(cluster);
    for (const user of kc.getUsers()) if (!merged.getUser(user.name)) merged.addUser(user);
    for (const context of kc.getContexts())
      if (!merged.getContextObject(context.name)) merged.addContext(context);
    if (!merged.getCurrentContext() && kc.getCurrentContext())
      merged.setCurrentContext(kc.getCurrentContext());
  }
  return merged;
}
