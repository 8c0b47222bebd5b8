// The serial console page: xterm.js on a websocket that carries the guest's serial
// port, first its history (the log's tail), then the live bytes both ways.
import { socketURL, statusLine, closeDetail } from './shared.js';

const root = document.getElementById('serial-console');
const screen = root.querySelector('.console-screen');

// The palette of the terminal; .xterm-rows takes its foreground.
const theme = {
  background: '#0b1015', foreground: '#d8dee9', cursor: '#5eead4', cursorAccent: '#0b1015',
  selectionBackground: '#334155',
};

/**
 * adoptInjectedStyles applies the <style> elements xterm.js puts into el. The CSP
 * (style-src 'self') blocks inline <style> elements, so their text is copied into a
 * constructed stylesheet, which the CSP does not govern, whenever xterm rewrites it.
 */
function adoptInjectedStyles(el) {
  const sheet = new CSSStyleSheet();
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  let last = '';
  const sync = () => {
    const css = [...el.querySelectorAll('style')].map((s) => s.textContent).join('\n');
    if (css !== last) {
      last = css;
      sheet.replaceSync(css);
    }
  };
  new MutationObserver(sync).observe(el, { childList: true, subtree: true, characterData: true });
  sync();
}

/** fit sizes the terminal to fill its box, from the size of one character cell. */
function fit(term) {
  // The same measurement xterm's fit addon uses.
  const cell = term._core?._renderService?.dimensions?.css?.cell;
  if (!cell || !cell.width || !cell.height) return;
  const style = getComputedStyle(screen);
  const width = screen.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const height = screen.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
  const cols = Math.max(20, Math.floor((width - 14) / cell.width)); // 14: the scroll bar
  const rows = Math.max(5, Math.floor(height / cell.height));
  if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
}

async function main() {
  const { Terminal } = await import(root.dataset.xterm);
  const term = new Terminal({
    cursorBlink: false,
    scrollback: 10000,
    fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 14,
    theme,
  });
  adoptInjectedStyles(screen);
  term.open(screen);
  fit(term);
  new ResizeObserver(() => fit(term)).observe(screen);

  const encoder = new TextEncoder();
  let ws = null;
  const setStatus = statusLine(root, () => connect());

  function send(bytes) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
  }
  term.onData((data) => send(encoder.encode(data)));
  // onBinary carries bytes as a string of code points 0-255 (some mouse reports).
  term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));

  function connect() {
    // The server sends the history again: start from a clean screen.
    term.reset();
    setStatus('connecting');
    const sock = new WebSocket(socketURL(root.dataset.ws), ['binary']);
    sock.binaryType = 'arraybuffer';
    sock.addEventListener('open', () => {
      setStatus('connected');
      term.focus();
    });
    sock.addEventListener('message', (ev) => {
      term.write(typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data));
    });
    sock.addEventListener('close', (ev) => {
      if (ws === sock) setStatus('disconnected', closeDetail(ev));
    });
    ws = sock;
  }
  connect();
}

main().catch((err) => {
  const text = root.querySelector('.console-status');
  text.dataset.state = 'disconnected';
  text.textContent = `The terminal could not start: ${err}`;
});
