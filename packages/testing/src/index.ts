// @usher/testing: what Usher's own tests use, for anyone testing against Usher.
export * from './databases.ts';
export * from './fake-driver.ts';
export * from './fake-kube-api.ts';
export * from './frame-socket.ts';
export * from './harness.ts';
export * from './session-socket.ts';
export * from './streamer.ts';
