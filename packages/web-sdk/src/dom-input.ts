// Watches the page for the viewer's input (keyboard, mouse, touch, wheel) so that AFK sees it.

export const INPUT_EVENTS = ['keydown', 'mousemove', 'mousedown', 'touchstart', 'wheel'] as const;

/**
 * Listens on the video's document in the capture phase, so input on the video itself is seen even when the
 * page stops its propagation. Returns the function that stops listening.
 */
export function watchInput(
  target: Pick<Document, 'addEventListener' | 'removeEventListener'>,
  onInput: () => void,
): () => void {
  const options = { capture: true, passive: true };
  const listener = () => onInput();
  for (const type of INPUT_EVENTS) target.addEventListener(type, listener, options);
  return () => {
    for (const type of INPUT_EVENTS) target.removeEventListener(type, listener, options);
  };
}
