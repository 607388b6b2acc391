// The console's shell: who is signed in, the navigation, and one page at a time by the URL's
// hash (#/audit?user=…), so every view can be linked and reloaded.

import * as api from './api.js';
import {h, mount, errorBox, loading} from './dom.js';
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
    const content = await page.render(params, {flash, go, refreshChip});
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
  render();
}

start();
