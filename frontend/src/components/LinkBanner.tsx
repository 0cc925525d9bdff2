import { useLinkState } from '../client';

/** Says so while the live link (websocket) is down; it reconnects by itself. */
export function LinkBanner() {
  const state = useLinkState();
  if (state !== 'reconnecting') return null;
  return (
    <div className={`link-banner ${state}`} role="status" data-testid="link-banner">
      Live updates interrupted: reconnecting…
    </div>
  );
}
