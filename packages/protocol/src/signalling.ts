// Epic's Pixel Streaming signalling protocol (1.3.0), as Usher speaks it: the messages a viewer (player) and a
// worker (streamer) may send, and the ones Usher sends them. Epic's messages may carry fields Usher does not
// use, so the schemas check what Usher relies on and let the rest through. See docs/signalling.md.
import Type, { type Static } from 'typebox';

/** The signalling protocol version Usher speaks; the one of Epic's UE 5.5 frontend and plugin. */
export const SIGNALLING_PROTOCOL_VERSION = '1.3.0';

const open = { additionalProperties: true } as const;
const Sdp = Type.String({ minLength: 1, maxLength: 60_000 });
const PlayerId = Type.String({ minLength: 1, maxLength: 128 });
const Candidate = Type.Object(
  {
    candidate: Type.String({ maxLength: 2_000 }),
    sdpMid: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
    sdpMLineIndex: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])),
  },
  open,
);

/** Viewer → server, on the session socket of a stream session (besides Usher's own client frames). */
export const PlayerSignal = Type.Union([
  Type.Object({ type: Type.Literal('listStreamers') }, open),
  Type.Object({ type: Type.Literal('subscribe'), streamerId: Type.String({ maxLength: 128 }) }, open),
  Type.Object({ type: Type.Literal('unsubscribe') }, open),
  Type.Object({ type: Type.Literal('answer'), sdp: Sdp }, open),
  Type.Object({ type: Type.Literal('offer'), sdp: Sdp }, open),
  Type.Object({ type: Type.Literal('iceCandidate'), candidate: Candidate }, open),
  Type.Object({ type: Type.Literal('layerPreference') }, open),
  Type.Object({ type: Type.Literal('dataChannelRequest') }, open),
  Type.Object({ type: Type.Literal('peerDataChannelsReady') }, open),
  Type.Object({ type: Type.Literal('stats') }, open),
]);
export type PlayerSignal = Static<typeof PlayerSignal>;

/** The player signals that go on to the streamer (with the player's id added). */
export const RELAYED_TO_STREAMER: ReadonlySet<string> = new Set([
  'answer',
  'offer',
  'iceCandidate',
  'layerPreference',
  'dataChannelRequest',
  'peerDataChannelsReady',
]);

/** Worker (streamer) → server, on `GET /workers/signalling`. */
export const StreamerSignal = Type.Union([
  Type.Object(
    {
      type: Type.Literal('endpointId'),
      id: Type.String({ maxLength: 128 }),
      protocolVersion: Type.Optional(Type.String({ maxLength: 32 })),
    },
    open,
  ),
  Type.Object({ type: Type.Literal('offer'), playerId: PlayerId, sdp: Sdp }, open),
  Type.Object({ type: Type.Literal('answer'), playerId: PlayerId, sdp: Sdp }, open),
  Type.Object({ type: Type.Literal('iceCandidate'), playerId: PlayerId, candidate: Candidate }, open),
  Type.Object(
    {
      type: Type.Literal('disconnectPlayer'),
      playerId: PlayerId,
      reason: Type.Optional(Type.String({ maxLength: 200 })),
    },
    open,
  ),
  Type.Object({ type: Type.Literal('ping'), time: Type.Optional(Type.Number()) }, open),
  Type.Object({ type: Type.Literal('pong'), time: Type.Optional(Type.Number()) }, open),
  Type.Object({ type: Type.Literal('streamerDataChannels') }, open),
  Type.Object({ type: Type.Literal('layerPreference') }, open),
  Type.Object({ type: Type.Literal('stats') }, open),
]);
export type StreamerSignal = Static<typeof StreamerSignal>;

/** The streamer signals that go on to the viewer of their `playerId`. */
export const RELAYED_TO_PLAYER: ReadonlySet<string> = new Set(['offer', 'answer', 'iceCandidate']);

/** The largest frame a streamer may send (an SDP offer with many codecs is a few KiB). */
export const MAX_STREAMER_FRAME_BYTES = 64 * 1024;
