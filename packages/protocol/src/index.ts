// @usher/protocol: the wire contract shared by the server and every SDK. No Node-only dependencies.

export * from './close-codes.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './limits.ts';
export * from './project.ts';
export * from './room-cursor.ts';
export * from './session.ts';
export * from './signalling.ts';
export * from './states.ts';
export * from './validate.ts';
export * from './version.ts';
export * from './worker.ts';
