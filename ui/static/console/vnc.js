// The graphical console page: noVNC on a websocket that carries the guest's VNC
// socket (RFB inside binary messages).
import { socketURL, statusLine } from './shared.js';

const root = document.getElementById('vnc-console');
const screen = root.querySelector('.console-screen');
const ctrlAltDel = root.querySelector('.console-cad');
const scale = root.querySelector('.console-scale');

async function main() {
  const { default: RFB } = await import(root.dataset.novnc);
  let rfb = null;
  const setStatus = statusLine(root, () => connect());

  function connect() {
    setStatus('connecting');
    ctrlAltDel.disabled = true;
    const r = new RFB(screen, socketURL(root.dataset.ws), { wsProtocols: ['binary'] });
    r.scaleViewport = scale.checked;
    r.resizeSession = false;
    r.focusOnClick = true;
    r.background = '#0b1015';
    r.addEventListener('connect', () => {
      setStatus('connected');
      ctrlAltDel.disabled = false;
      r.focus();
    });
    r.addEventListener('disconnect', (ev) => {
      if (rfb !== r) return;
      ctrlAltDel.disabled = true;
      setStatus('disconnected', ev.detail.clean ? 'the console closed' : 'the connection to the console was lost');
    });
    r.addEventListener('credentialsrequired', () => {
      setStatus('disconnected', 'the server asks for a VNC password, which Cairn does not use');
      r.disconnect();
    });
    r.addEventListener('securityfailure', (ev) => {
      setStatus('disconnected', `the server refused the connection: ${ev.detail.reason || ev.detail.status}`);
    });
    rfb = r;
  }

  ctrlAltDel.addEventListener('click', () => {
    if (rfb) {
      rfb.sendCtrlAltDel();
      rfb.focus();
    }
  });
  scale.addEventListener('change', () => {
    if (rfb) rfb.scaleViewport = scale.checked;
  });
  connect();
}

main().catch((err) => {
  const text = root.querySelector('.console-status');
  text.dataset.state = 'disconnected';
  text.textContent = `The viewer could not start: ${err}`;
});
