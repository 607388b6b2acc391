// The console's shell: who is signed in, the navigation, and one page at a time by the URL's
// hash (#/audit?user=…), so every view can be linked and reloaded.

import * as api from './api.js';
import {h, mount, errorBox, loading, code} from './dom.js';
import overview from './pages/overview.js';
import routes from './pages/routes.js';
import playground from './pages/playground.js';
import impact from './pages/impact.js';
import audit from './pages/audit.js';
import sessions from './pages/sessions.js';
import devices from './pages/devices.js';

const PAGES = {overview, routes, playground, impact, audit, sessions, devices};

const $ = (id) => document.getElementById(id);

/** Shows a short message above the page. */
export function flash(text, kind = 'ok') {
  const box = h('div', {class: ['alert', `alert-${kind}`]}, text);
  mount($('flash'), box);
  if (kind === 'ok') setTimeout(() => { if (box.isConnected) box.remove(); }, 6000);
}

/** Goes to `page` with `params` (it renders through the hashchange). */
export function go(page, params = {}) {
  window.location.hash = `#/${page}${api.query(params)}`;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const [name, q] = raw.split('?');
  return {name: PAGES[name] ? name : 'overview', params: Object.fromEntries(new URLSearchParams(q || ''))};
}

let rendering = 0;

async function render() {
  const {name, params} = parseHash();
  const page = PAGES[name];
  const ticket = ++rendering;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === name);
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  $('title').textContent = page.title;
  $('subtitle').textContent = page.subtitle || '';
  document.title = `${page.title} · Gatehouse admin`;
  const root = $('page');
  // A message belongs to the page it was shown on, unless it says what brought us here.
  if (!params.keepFlash) mount($('flash'));
  mount(root, loading());
  try {
    const content = await page.render(params, {flash, go, refreshChip, bundleSeen});
    if (ticket === rendering) mount(root, content);
  } catch (err) {
    if (ticket === rendering) mount(root, errorBox(err));
  }
}

/** The live bundle's version in the top bar, red when the last reload was refused. */
export async function refreshChip() {
  try {
    const b = await api.get('/admin/api/bundle');
    const chip = $('bundle-chip');
    chip.className = b.last_error ? 'chip chip-error' : 'chip';
    mount(chip, h('span', {class: 'chip-label'}, 'bundle'), h('code', {}, b.version),
      b.last_error ? h('span', {class: 'chip-warn'}, 'reload refused') : null);
  } catch { /* the page itself shows errors */ }
}

// Reloads the console did not ask for (the file watcher's, another administrator's) are
// shown as they happen: an activation with its impact on the audited requests of the last
// day, a refusal with its `file:line:col` error (docs/admin.md, "Reloads").
const BUNDLE_POLL_MS = 5000;
let seenBundle = null;

function bundleMark(b) {
  return {version: b.version, errorAt: b.last_error_at ?? null};
}

/** Records the bundle as the console now knows it, so its own reloads are not announced. */
export async function bundleSeen() {
  try { seenBundle = bundleMark(await api.get('/admin/api/bundle')); } catch { /* next poll */ }
}

async function watchBundle() {
  let b;
  try { b = await api.get('/admin/api/bundle'); } catch { return; }
  const mark = bundleMark(b);
  const before = seenBundle;
  seenBundle = mark;
  if (!before || (mark.version === before.version && mark.errorAt === before.errorAt)) return;
  refreshChip();
  if (mark.version !== before.version) await announceActivation(b);
  else if (mark.errorAt) announceRefusal(b);
}

function announceRefusal(b) {
  mount($('flash'), h('div', {class: 'alert alert-error', id: 'reload-notice', 'data-result': 'refused'},
    h('div', {class: 'alert-title'}, 'A reload was refused — the previous bundle keeps serving.'),
    h('pre', {class: 'mono error-text'}, b.last_error),
    h('a', {href: '#/impact?bundle=disk&keepFlash=1'}, 'Preview what the files on disk would change →')));
}

async function announceActivation(b) {
  const impact = h('div', {id: 'reload-impact'}, 'Re-deciding the audited requests of the last 24 hours…');
  const box = h('div', {class: 'alert alert-ok', id: 'reload-notice', 'data-result': 'activated'},
    h('div', {class: 'alert-title'}, 'Bundle ', code(b.version), ' is live',
      b.previous_version ? h('span', {}, ', replacing ', code(b.previous_version)) : null, '.'),
    impact);
  mount($('flash'), box);
  if (!b.previous_version) {
    mount(impact, 'No previous bundle to compare with.');
    return;
  }
  try {
    const r = await api.post(`/admin/api/impact${api.query({since: '24h', against: 'previous'})}`);
    if (r.error) {
      mount(impact, `Its impact cannot be previewed: ${r.error}`);
      return;
    }
    mount(impact, h('span', {id: 'reload-impact-summary'},
      `${r.changed} of ${r.evaluated.toLocaleString()} audited requests of the last 24 hours would be decided differently`,
      r.truncated ? ' (limit reached)' : '', '. '),
    h('a', {href: '#/impact?against=previous&keepFlash=1'}, 'See them, by route →'));
    if (r.changed) box.className = 'alert alert-warn';
  } catch (err) {
    mount(impact, `Its impact could not be computed: ${err.message}`);
  }
}

async function start() {
  try {
    const me = await api.session();
    $('who-email').textContent = me.email;
    const out = $('sign-out');
    out.href = me.logout_url;
  } catch (err) {
    mount($('page'), errorBox(err));
    return;
  }
  window.addEventListener('hashchange', render);
  refreshChip();
  await bundleSeen();
  setInterval(watchBundle, BUNDLE_POLL_MS);
  render();
}

start();
