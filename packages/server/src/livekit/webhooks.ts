// LiveKit's webhooks, verified and turned into Usher's participant and room events, and the route that
// receives them (POST /livekit/webhook).
//
// LiveKit signs each webhook with a token in the Authorization header: a JWT issued by the API key, signed with
// its secret, whose `sha256` claim is the base64 SHA-256 of the exact body. So the route must see the raw body.
import { type Participant, UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import { WebhookReceiver } from 'livekit-server-sdk';
import type { LiveKitSettings } from './config.ts';
import { toParticipant } from './roles.ts';

export const WEBHOOK_PATH = '/livekit/webhook';

/** A webhook that matters to Usher: `sessionId` is the room's name; `id` is LiveKit's event id. */
export type LiveKitRoomEvent =
  | {
      type: 'participant_joined' | 'participant_left';
      id: string;
      sessionId: string;
      participant: Participant;
      at: string;
    }
  | { type: 'room_finished'; id: string; sessionId: string; at: string };

export type LiveKitEvent = LiveKitRoomEvent | { type: 'ignored'; event: string };

/** jose's error codes for a token that is not LiveKit's (the SDK uses its own copy of jose) */
const TOKEN_ERRORS: Record<string, string> = {
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED:
    'its signature does not verify with livekit.apiSecret: check that LiveKit signs webhooks with the key in livekit.apiKey',
  ERR_JWT_EXPIRED: 'its signature has expired: check the clocks of the LiveKit and Usher machines',
  ERR_JWS_INVALID: 'its Authorization header is not a LiveKit token',
  ERR_JWT_INVALID: 'its Authorization header is not a LiveKit token',
  ERR_JOSE_ALG_NOT_ALLOWED: 'its Authorization header is not a LiveKit token',
  ERR_JOSE_NOT_SUPPORTED: 'its Authorization header is not a LiveKit token',
};

export class LiveKitWebhooks {
  readonly #receiver: WebhookReceiver;

  constructor(settings: Pick<LiveKitSettings, 'apiKey' | 'apiSecret'>) {
    this.#receiver = new WebhookReceiver(settings.apiKey, settings.apiSecret);
  }

  /** Verifies one webhook and says what it means; a missing or bad signature throws UNAUTHORIZED. */
  async receive(rawBody: string, authorization: string | undefined): Promise<LiveKitEvent> {
    // LiveKit sends the bare token; a proxy or a hand-made request may add the usual Bearer prefix
    const token = authorization?.replace(/^Bearer\s+/i, '').trim();
    if (!token)
      throw new UsherError(
        'UNAUTHORIZED',
        'the LiveKit webhook has no Authorization header: LiveKit signs every webhook, so this request did not come from LiveKit',
      );
    let event: Awaited<ReturnType<WebhookReceiver['receive']>>;
    try {
      event = await this.#receiver.receive(rawBody, token);
    } catch (err) {
      throw webhookError(err);
    }
    const sessionId = event.room?.name;
    const at = new Date(Number(event.createdAt) * 1000 || Date.now()).toISOString();
    switch (event.event) {
      case 'participant_joined':
      case 'participant_left':
        if (!sessionId || !event.participant) return { type: 'ignored', event: event.event };
        return {
          type: event.event,
          id: event.id,
          sessionId,
          participant: toParticipant(event.participant),
          at,
        };
      case 'room_finished':
        if (!sessionId) return { type: 'ignored', event: event.event };
        return { type: 'room_finished', id: event.id, sessionId, at };
      default:
        return { type: 'ignored', event: event.event };
    }
  }
}

function webhookError(err: unknown): UsherError {
  const e = err as { code?: string; claim?: string; message?: string };
  const tokenError = e.code ? TOKEN_ERRORS[e.code] : undefined;
  if (tokenError) return new UsherError('UNAUTHORIZED', `the LiveKit webhook was refused: ${tokenError}`);
  if (e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED')
    return new UsherError(
      'UNAUTHORIZED',
      e.claim === 'iss'
        ? 'the LiveKit webhook was refused: it was signed by another API key than livekit.apiKey'
        : `the LiveKit webhook was refused: its token's "${e.claim}" claim is not valid`,
    );
  if (e.message === 'sha256 checksum of body does not match')
    return new UsherError(
      'UNAUTHORIZED',
      'the LiveKit webhook was refused: its body is not the one its signature covers (was it changed on the way?)',
    );
  return new UsherError(
    'BAD_REQUEST',
    `the LiveKit webhook is signed but not readable: ${e.message ?? String(err)}`,
  );
}

export interface WebhookRouteOptions {
  receiver: LiveKitWebhooks;
  /** called once per webhook that matters; if it throws, LiveKit gets an error and sends the webhook again */
  onEvent: (event: LiveKitRoomEvent) => void | Promise<void>;
}

/**
 * Registers POST /livekit/webhook in its own scope, whose parsers keep the body as the raw string the
 * signature covers (LiveKit sends `application/webhook+json`). Answers 200, or 401 `{error:{code,message}}`.
 */
export async function liveKitWebhookRoute(app: FastifyInstance, options: WebhookRouteOptions): Promise<void> {
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      ['application/webhook+json', 'application/json'],
      { parseAs: 'string' },
      (_req, body, done) => done(null, body),
    );
    scope.post(
      WEBHOOK_PATH,
      { schema: { tags: ['livekit'], summary: 'LiveKit webhooks, signed by LiveKit with livekit.apiKey' } },
      async (req, reply) => {
        let event: LiveKitEvent;
        try {
          event = await options.receiver.receive(
            typeof req.body === 'string' ? req.body : '',
            req.headers.authorization,
          );
        } catch (err) {
          const ue = err instanceof UsherError ? err : new UsherError('BAD_REQUEST', String(err));
          return reply.status(ue.status).send(ue.toBody());
        }
        if (event.type !== 'ignored') await options.onEvent(event);
        return reply.status(200).send();
      },
    );
  });
}
