// Sizes the server enforces, in a module of their own with no schema library behind it: the browser SDK
// imports them without pulling the schemas into its bundle.

/** The largest frame a client may send on a session socket, in bytes (a larger one closes it with 1009). */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024;

/** The most recorded messages a reopened session socket replays (the newest of them; see Replayed). */
export const MAX_REPLAYED_MESSAGES = 1_000;
