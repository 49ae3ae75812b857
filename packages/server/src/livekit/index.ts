// LiveKit mode: a session's room is a LiveKit room. Settings, participant tokens, rooms, webhooks and the
// recorder (the test fake is in fake-server.ts and is not exported here).

export { LiveKitConfigError, type LiveKitSettings, parseLiveKitSettings } from './config.ts';
export {
  decodeRoomMessage,
  LiveKitRecorder,
  type LiveKitRecorderOptions,
  type RecorderRoom,
  type RoomMessage,
} from './recorder.ts';
export { LIVEKIT_ROLES, type LiveKitRole, RECORDER_IDENTITY, ROLE_ATTRIBUTE } from './roles.ts';
export { type CreateRoomOptions, type LiveKitRoom, LiveKitRooms } from './rooms.ts';
export { grantsFor, LiveKitTokens, type ParticipantTokenRequest } from './tokens.ts';
export {
  type LiveKitEvent,
  type LiveKitRoomEvent,
  LiveKitWebhooks,
  liveKitWebhookRoute,
  WEBHOOK_PATH,
  type WebhookRouteOptions,
} from './webhooks.ts';
