// How the Kubernetes driver authenticates: in-cluster, a kubeconfig file, or the usual defaults.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubernetesConfigError, type KubernetesSettings } from './kubernetes-settings.ts';

/**
 * The KubeConfig of the settings: the pod's service account (inCluster), a kubeconfig file (with an optional
 * context), or — when neither is given — in-cluster inside a pod, else $KUBECONFIG or ~/.kube/config.
 */
export function loadKubeConfig(settings: Readonly<KubernetesSettings>): KubeConfig {
  const kc = new KubeConfig();
  const inPod = !!process.env.KUBERNETES_SERVICE_HOST;
  if (settings.inCluster || (settings.inCluster === undefined && !settings.kubeconfig && inPod)) {
    if (!inPod)
      throw new KubernetesConfigError(
        'kubernetes.inCluster: Usher does not run in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); give kubernetes.kubeconfig instead',
      );
    kc.loadFromCluster();
    return kc;
  }
  const file =
    settings.kubeconfig ??
    process.env.KUBECONFIG?.split(process.platform === 'win32' ? ';' : ':').find(Boolean) ??
    join(homedir(), '.kube', 'config');
  if (!existsSync(file))
    throw new KubernetesConfigError(
      `kubernetes: no kubeconfig at ${file}; give kubernetes.kubeconfig (a kubeconfig file) or kubernetes.inCluster: true`,
    );
  try {
    kc.loadFromFile(file);
  } catch (err) {
    throw new KubernetesConfigError(`kubernetes.kubeconfig: cannot read ${file}: ${(err as Error).message}`);
  }
  if (settings.context) {
    if (!kc.getContextObject(settings.context))
      throw new KubernetesConfigError(
        `kubernetes.context "${settings.context}" is not in ${file} (it has: ${kc
          .getContexts()
          .map((c) => c.name)
          .join(', ')})`,
      );
    kc.setCurrentContext(settings.context);
  }
  if (!kc.getCurrentCluster())
    throw new KubernetesConfigError(`kubernetes.kubeconfig: ${file} has no current context with a cluster`);
  return kc;
}
