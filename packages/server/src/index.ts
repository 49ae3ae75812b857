// @usher/server: the Usher server as a library.

export { checkOrigin } from './api/origins.ts';
export { DEFAULT_SESSION_RATE, type SessionRateOptions } from './api/session-rate.ts';
export { ADMIN_KEY_CACHE_MS, AdminKeys, generateAdminKey, hashAdminKey } from './auth/admin-keys.ts';
export { TokenIssuer } from './auth/tokens.ts';
export type { WorkerDriver, WorkerExit, WorkerLaunch } from './drivers/driver.ts';
export { ExternalDriver } from './drivers/external.ts';
// the driver itself is `@usher/server/kubernetes`: its client takes seconds to load, so only servers that use it do
export {
  KubernetesConfigError,
  type KubernetesSettings,
  parseKubernetesSettings,
  REQUIRED_PERMISSIONS,
} from './drivers/kubernetes-settings.ts';
export { expandLaunchVars, ProcessDriver } from './drivers/process.ts';
export { type Clock, ManualClock, systemClock } from './engine/clock.ts';
export { Engine, type EngineOptions, type WorkerLink } from './engine/engine.ts';
export { EventHub } from './engine/event-hub.ts';
export { validateProject } from './engine/project-input.ts';
export { LiveKitConfigError, type LiveKitSettings, parseLiveKitSettings } from './livekit/config.ts';
export { LiveKitMode } from './livekit/mode.ts';
export type { RateLimit } from './realtime/rate-limit.ts';
export { UsherServer, type UsherServerOptions, VERSION } from './server.ts';
export { type AdminKeyRecord, AdminKeyStore } from './storage/admin-keys.ts';
export { openStore, redact, type StorageOptions, Store } from './storage/store.ts';
export type { Logger } from './util/logger.ts';
export { REDACT_PATHS, redactOptions, safeLoggerOptions, scrubSecrets } from './util/redact.ts';
export { resolveEndpoints, WebhookConfigError, type WebhookEndpoint } from './webhooks/endpoints.ts';
export type { WebhookDeliveryOptions, Webhooks } from './webhooks/service.ts';
