// The protocol version every client and worker announces; bump the major on breaking wire changes.
export const PROTOCOL_VERSION = '1.0.0';
