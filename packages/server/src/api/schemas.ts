// Schemas shared by several routes.
import Type from 'typebox';

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    retryable: Type.Optional(Type.Boolean()),
    details: Type.Optional(Type.Unknown()),
  }),
});

export const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);
