// Shared by the console pages: the websocket URL, the status line, the reconnect button.

/** socketURL turns the page's data-ws path into a ws: or wss: URL on this host. */
export function socketURL(path) {
  const u = new URL(path, window.location.href);
  u.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/**
 * statusLine drives the page's status line (role=status) and its reconnect button.
 * state is connecting, connected or disconnected; it is also the element's
 * data-state, which the stylesheet colours.
 */
export function statusLine(root, onReconnect) {
  const text = root.querySelector('.console-status');
  const button = root.querySelector('.console-reconnect');
  button.addEventListener('click', () => onReconnect());
  return (state, detail) => {
    const labels = { connecting: 'Connecting…', connected: 'Connected', disconnected: 'Disconnected' };
    text.dataset.state = state;
    text.textContent = detail ? `${labels[state]} — ${detail}` : labels[state];
    button.hidden = state !== 'disconnected';
  };
}

/** closeDetail says why a websocket closed, in words a person can act on. */
export function closeDetail(ev) {
  if (ev.reason) return ev.reason;
  switch (ev.code) {
    case 1000: return 'the console closed';
    case 1006: return 'the connection to the console was lost';
    default: return `closed (${ev.code})`;
  }
}
