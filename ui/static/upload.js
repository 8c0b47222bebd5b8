// upload.js: uploads disk images from the browser in chunks that survive dropped
// connections and page reloads. The page (ui/images) holds:
//   <form id="upload-form">        file, name, format, pool; POST /images/upload
//                                  answers {id, offset}
//   <div id="upload-status">       the progress of the upload under way; data-csrf
//                                  carries the session's CSRF token
//   <input data-resume-id=…>       in the row of an unfinished upload: pick the same
//                                  file again to continue it
// Each chunk is PATCH /images/{id}/upload with Upload-Offset; on a network error, a
// 409 or a 5xx the script asks GET /images/{id}/upload where the upload stands and
// goes on from there. The engine checks the finished file; its refusal is shown as
// it is.

const MiB = 1024 * 1024;
const CHUNK = 8 * MiB;
// How many failures in a row end an upload (it can still be resumed later).
const RETRIES = 8;
const CHUNK_TYPE = 'application/offset+octet-stream';
// The event the images table reloads on (images.EventChanged).
const CHANGED = 'images-changed';

const formats = { qcow2: 'qcow2', qcow: 'qcow2', img: 'raw', raw: 'raw', iso: 'iso', vmdk: 'vmdk', vdi: 'vdi', vhdx: 'vhdx' };

// UploadError is a refusal the upload cannot get past by retrying.
class UploadError extends Error {}

// Paused is thrown when the person paused the upload.
class Paused extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function panel() {
  return document.getElementById('upload-status');
}

function csrfHeaders(extra = {}) {
  const p = panel();
  return { 'X-CSRF-Token': p ? p.dataset.csrf : '', Accept: 'application/json', ...extra };
}

function mib(n) {
  return (n / MiB).toFixed(n < 100 * MiB ? 1 : 0);
}

async function readJSON(res) {
  try {
    return await res.json();
  } catch {
    return {};
  }
}

function uploadURL(id) {
  return `/images/${encodeURIComponent(id)}/upload`;
}

// The file an upload was started with, kept so that a resume after a reload can
// check that the person picked the same one.
const memory = {
  key: (id) => `cairn.upload.${id}`,
  save(id, file) {
    try {
      localStorage.setItem(this.key(id), JSON.stringify({ name: file.name, size: file.size, modified: file.lastModified }));
    } catch {
      // Private windows may refuse storage; the size check still holds.
    }
  },
  load(id) {
    try {
      return JSON.parse(localStorage.getItem(this.key(id)) || 'null');
    } catch {
      return null;
    }
  },
  forget(id) {
    try {
      localStorage.removeItem(this.key(id));
    } catch {
      // Nothing to forget.
    }
  },
};

// view shows one upload in #upload-status.
const view = {
  show(file, size) {
    const p = panel();
    if (!p) return;
    p.hidden = false;
    p.dataset.state = 'running';
    p.querySelector('.upload-file').textContent = file;
    p.querySelector('.upload-bar').max = 100;
    this.pause(true, 'Pause');
    this.message('', '');
    this.total = size;
  },
  progress(offset, rate) {
    const p = panel();
    if (!p) return;
    const pct = this.total > 0 ? (offset / this.total) * 100 : 0;
    p.querySelector('.upload-bar').value = pct;
    p.dataset.offset = String(offset);
    let line = `${mib(offset)} of ${mib(this.total)} MiB`;
    if (rate > 0) line += `, ${(rate / MiB).toFixed(1)} MiB/s`;
    p.querySelector('.upload-numbers').textContent = line;
  },
  message(text, tone) {
    const p = panel();
    if (!p) return;
    const m = p.querySelector('.upload-message');
    m.textContent = text;
    m.className = 'upload-message' + (tone ? ` upload-${tone}` : '');
  },
  pause(visible, label) {
    const b = panel()?.querySelector('.upload-pause');
    if (!b) return;
    b.hidden = !visible;
    if (label) b.textContent = label;
  },
  end(state, text, tone) {
    const p = panel();
    if (p) p.dataset.state = state;
    this.message(text, tone);
  },
};

// current is the upload under way, or null.
let current = null;

// Upload sends one file into image id from offset on.
class Upload {
  constructor(id, name, file, offset) {
    this.id = id;
    this.name = name;
    this.file = file;
    this.offset = offset;
    this.paused = false;
    this.abort = null;
  }

  // status asks where the upload stands.
  async status() {
    const res = await fetch(uploadURL(this.id), { headers: csrfHeaders(), cache: 'no-store' });
    const body = await readJSON(res);
    if (res.ok) return body;
    const err = body.error || `The engine answered ${res.status} ${res.statusText}.`;
    if (res.status >= 500) throw new Error(err);
    throw new UploadError(err);
  }

  // run sends the rest of the file, retrying and resuming on failures.
  async run() {
    const size = this.file.size;
    const start = performance.now();
    const startOffset = this.offset;
    let failures = 0;
    const fail = async (why) => {
      failures += 1;
      if (failures > RETRIES) {
        throw new UploadError(`${why} The upload stopped at ${mib(this.offset)} MiB; use Resume to go on.`);
      }
      const wait = Math.min(500 * 2 ** (failures - 1), 8000);
      view.message(`${why} Resuming in ${Math.round(wait / 1000) || 1} s…`, 'warn');
      await sleep(wait);
      if (this.paused) throw new Paused();
      try {
        const s = await this.status();
        if (s.state === 'ready') return true;
        this.offset = s.offset;
      } catch (err) {
        if (err instanceof UploadError) throw err;
        // The status request failed too: count it and try again.
        return fail('The engine cannot be reached.');
      }
      return false;
    };
    view.progress(this.offset, 0);
    for (;;) {
      if (this.paused) throw new Paused();
      if (this.offset >= size) {
        // Everything was sent but the answer to the last chunk was lost.
        const s = await this.status();
        if (s.state === 'ready') return;
        this.offset = Math.min(s.offset, size);
        if (this.offset >= size) throw new UploadError('The engine has every byte but did not finish the image. Reload the page.');
      }
      const end = Math.min(this.offset + CHUNK, size);
      this.abort = new AbortController();
      let res;
      try {
        res = await fetch(uploadURL(this.id), {
          method: 'PATCH',
          headers: csrfHeaders({ 'Upload-Offset': String(this.offset), 'Content-Type': CHUNK_TYPE }),
          body: this.file.slice(this.offset, end),
          signal: this.abort.signal,
          cache: 'no-store',
        });
      } catch {
        if (this.paused) throw new Paused();
        if (await fail('The connection broke.')) return;
        continue;
      }
      const body = await readJSON(res);
      if (res.ok) {
        failures = 0;
        if (body.state === 'ready') {
          this.offset = size;
          view.progress(size, 0);
          return;
        }
        this.offset = body.offset;
        const secs = (performance.now() - start) / 1000;
        view.progress(this.offset, secs > 0 ? (this.offset - startOffset) / secs : 0);
        view.message('', '');
        continue;
      }
      if (res.status === 409 && Number.isFinite(body.offset) && body.offset >= 0 && body.offset !== this.offset) {
        // The engine holds a different part of the file than we thought: go on from there.
        failures += 1;
        if (failures > RETRIES) throw new UploadError(body.error);
        this.offset = body.offset;
        view.progress(this.offset, 0);
        continue;
      }
      if (res.status === 409 || res.status >= 500) {
        if (await fail(body.error || `The engine answered ${res.status}.`)) return;
        continue;
      }
      // 400 (the engine refused the file), 403, 404, 415: retrying cannot help.
      throw new UploadError(body.error || `The engine answered ${res.status} ${res.statusText}.`);
    }
  }

  pause() {
    this.paused = true;
    if (this.abort) this.abort.abort();
  }
}

// start runs an upload to its end and shows how it ended.
async function start(up) {
  current = up;
  setBusy(true);
  view.show(up.file.name, up.file.size);
  view.message(up.offset > 0 ? `Resuming from ${mib(up.offset)} MiB…` : 'Uploading…', '');
  try {
    await up.run();
    memory.forget(up.id);
    view.pause(false);
    view.end('done', `${up.name} is uploaded and ready.`, 'ok');
    changed();
    if (!document.getElementById('images')) {
      // The image's own page: show it as it is now.
      setTimeout(() => location.reload(), 800);
    }
  } catch (err) {
    if (err instanceof Paused) {
      view.pause(true, 'Continue');
      view.end('paused', `Paused at ${mib(up.offset)} MiB. Continue now, or later with Resume and the same file.`, 'warn');
      return;
    }
    view.pause(false);
    view.end('failed', err.message || String(err), 'error');
    changed();
  } finally {
    setBusy(false);
    if (current === up && panel()?.dataset.state !== 'paused') current = null;
  }
}

// setBusy disables the ways to start another upload while one runs.
function setBusy(busy) {
  const form = document.getElementById('upload-form');
  const button = form?.querySelector('button[type=submit]');
  if (button) button.disabled = busy;
  for (const input of document.querySelectorAll('input[data-resume-id]')) input.disabled = busy;
}

// changed reloads the images table (and anything else listening) after an upload
// started or ended.
function changed() {
  document.body.dispatchEvent(new Event(CHANGED, { bubbles: true }));
  if (!window.htmx) refreshTable();
}

// refreshTable reloads the images table without htmx.
async function refreshTable() {
  const table = document.getElementById('images');
  if (!table) return;
  try {
    const res = await fetch('/images/table', { headers: { 'HX-Request': 'true', 'HX-Target': 'images' }, cache: 'no-store' });
    if (!res.ok) return;
    const tpl = document.createElement('template');
    tpl.innerHTML = (await res.text()).trim();
    const fresh = tpl.content.firstElementChild;
    if (fresh && fresh.id === 'images') table.replaceWith(fresh);
    setBusy(current !== null && panel()?.dataset.state === 'running');
  } catch {
    // The table stays as it was; the next action reloads it.
  }
}

// slug turns a file name into an image name: "Debian 12.qcow2" → "debian-12".
function slug(fileName) {
  let s = fileName.replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9._@-]+/g, '-');
  s = s.replace(/^[^a-z0-9]+/, '').replace(/-+$/, '').slice(0, 64);
  return s.length >= 2 ? s : '';
}

function setupForm(form) {
  const file = form.querySelector('input[type=file]');
  const name = form.elements.name;
  const format = form.elements.format;
  const button = form.querySelector('button[type=submit]');
  if (button) button.disabled = false;
  let autoName = '';
  file.addEventListener('change', () => {
    const f = file.files[0];
    if (!f) return;
    const ext = f.name.includes('.') ? f.name.split('.').pop().toLowerCase() : '';
    if (formats[ext]) format.value = formats[ext];
    if (name.value === '' || name.value === autoName) {
      autoName = slug(f.name);
      name.value = autoName;
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (current && panel()?.dataset.state === 'running') return;
    const f = file.files[0];
    if (!f) return;
    setBusy(true);
    view.show(f.name, f.size);
    view.pause(false);
    view.message('Starting the upload…', '');
    let res;
    let body;
    try {
      res = await fetch(form.action, {
        method: 'POST',
        headers: csrfHeaders(),
        body: new URLSearchParams({ name: name.value, format: format.value, pool: form.elements.pool.value, size: String(f.size) }),
      });
      body = await readJSON(res);
    } catch {
      setBusy(false);
      view.end('failed', 'The engine cannot be reached. Check the connection and try again.', 'error');
      return;
    }
    if (!res.ok) {
      setBusy(false);
      view.end('failed', body.error || `The engine answered ${res.status} ${res.statusText}.`, 'error');
      return;
    }
    memory.save(body.id, f);
    changed();
    form.reset();
    autoName = '';
    await start(new Upload(body.id, body.name || name.value, f, body.offset || 0));
  });
}

// resume continues the upload of input's image with the file picked in it.
async function resume(input) {
  const f = input.files[0];
  input.value = '';
  if (!f) return;
  if (current && panel()?.dataset.state === 'running') return;
  const id = input.dataset.resumeId;
  const name = input.dataset.resumeName;
  const size = Number(input.dataset.resumeSize);
  view.show(f.name, size);
  view.pause(false);
  if (f.size !== size) {
    view.end('failed', `${f.name} has ${f.size} bytes, but the upload of ${name} is for a file of ${size} bytes. Pick the file you started with.`, 'error');
    return;
  }
  const saved = memory.load(id);
  if (saved && saved.name !== f.name) {
    view.end('failed', `The upload of ${name} was started with ${saved.name}, not ${f.name}. Pick that file.`, 'error');
    return;
  }
  const up = new Upload(id, name, f, 0);
  try {
    const s = await up.status();
    if (s.state === 'ready') {
      view.end('done', `${name} is uploaded and ready.`, 'ok');
      changed();
      return;
    }
    up.offset = s.offset;
  } catch (err) {
    view.end('failed', err.message || String(err), 'error');
    return;
  }
  memory.save(id, f);
  await start(up);
}

document.addEventListener('change', (ev) => {
  const input = ev.target instanceof Element ? ev.target.closest('input[type=file][data-resume-id]') : null;
  if (input) resume(input);
});

document.addEventListener('click', (ev) => {
  const button = ev.target instanceof Element ? ev.target.closest('#upload-status .upload-pause') : null;
  if (!button || !current) return;
  if (panel()?.dataset.state === 'running') {
    current.pause();
    return;
  }
  // Continue a paused upload with the file still in hand.
  const up = new Upload(current.id, current.name, current.file, current.offset);
  up.status().then((s) => {
    if (s.state === 'ready') {
      view.end('done', `${up.name} is uploaded and ready.`, 'ok');
      changed();
      return;
    }
    up.offset = s.offset;
    start(up);
  }, (err) => view.end('failed', err.message || String(err), 'error'));
});

const form = document.getElementById('upload-form');
if (form) setupForm(form);
