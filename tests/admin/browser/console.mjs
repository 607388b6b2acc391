// Drives Debian's headless Chromium through Gatehouse's admin console (run by
// tests/admin/main.rs, which starts Gatehouse, the dev IdP and the traffic first).
//
// Environment: CHROMIUM (the browser binary), ADMIN_URL, PUBLIC_URL, SCREENSHOTS (a
// directory), VICTIM_COOKIE (a live session the console revokes), CANDIDATE_TARBALL (a
// bundle to preview), POLICIES_DIR (the live bundle, edited to make the watcher reload),
// CANDIDATE_DIR (the candidate's files). Prints one JSON report line; exits 1 at the first failed check.

import fs from 'node:fs/promises';
import path from 'node:path';

import {chromium} from 'playwright-core';

const env = process.env;
const ADMIN = env.ADMIN_URL;
const PUBLIC = env.PUBLIC_URL;
const consoleErrors = [];
const cspViolations = [];
const steps = [];

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Console errors and CSP violations of admin pages (the IdP's pages are not ours). */
function watch(page, label, errors = consoleErrors) {
  page.on('console', (msg) => {
    const where = msg.location()?.url || page.url();
    if (msg.type() !== 'error' || !(where.startsWith(ADMIN) || page.url().startsWith(ADMIN))) return;
    const text = `${label}: ${msg.text()} (${where})`;
    if (/Content Security Policy|CSP violation/.test(msg.text())) cspViolations.push(text);
    else errors.push(text);
  });
  page.on('pageerror', (err) => errors.push(`${label}: uncaught ${err.message}`));
}

async function newContext(browser) {
  const context = await browser.newContext({viewport: {width: 1280, height: 800}});
  // Reported by the page itself too, in case Chromium's own console message changes.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  return context;
}

async function signIn(page, user) {
  await page.goto(`${ADMIN}/admin/#/overview`);
  // No session: the console sends the browser to the login, which goes on to the IdP.
  await page.waitForSelector('#username');
  await page.fill('#username', user);
  await page.fill('#password', user);
  await Promise.all([page.waitForURL(`${ADMIN}/admin/**`), page.click('button[type=submit]')]);
}

async function open(page, name, ready) {
  await page.click(`#nav a[data-page="${name}"]`);
  await page.waitForSelector(ready);
  await page.waitForFunction(() => !document.querySelector('#page .loading'));
}

async function shot(page, name) {
  // The page as it opens: scrolled to the top, tables to their first column.
  await page.evaluate(() => {
    window.scrollTo(0, 0);
    for (const t of document.querySelectorAll('.table-wrap')) t.scrollLeft = 0;
  });
  await page.screenshot({path: `${env.SCREENSHOTS}/${name}.png`});
  steps.push(name);
}

async function text(page, selector) {
  return (await page.textContent(selector))?.trim() ?? '';
}

/** `/auth/verify` as an ingress asks it, with the victim's cookie. */
async function verifyVictim() {
  const r = await fetch(`${PUBLIC}/auth/verify`, {
    headers: {'X-Original-URL': 'http://apps.example.com/restaurant/menu', Cookie: `_gatehouse=${env.VICTIM_COOKIE}`},
    redirect: 'manual',
  });
  return r.status;
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
try {
  const context = await newContext(browser);
  const page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  watch(page, 'admin');

  await signIn(page, 'carol');
  await page.waitForFunction(() => document.querySelector('#who-email')?.textContent === 'carol@example.com');
  check((await page.getAttribute('#sign-out', 'href')).endsWith('/auth/logout'), 'sign-out link');

  // Overview: bundle, chart with bars, most denied, audit pipeline.
  await page.waitForSelector('.tiles');
  await page.waitForSelector('.chart-svg rect.bar-deny');
  check((await page.$$('.chart-svg rect.bar')).length > 0, 'the chart has bars');
  check((await text(page, '.grid-2')).includes('marketing'), 'marketing is among the most denied routes');
  check((await text(page, '.grid-2')).includes('dave@example.com'), 'dave is among the most denied users');
  await shot(page, 'overview');

  // Routes: the table, then one route's source with line numbers and its tests.
  await open(page, 'routes', '.routes-table');
  check((await page.$$('.routes-table tbody tr')).length >= 6, 'every route is listed');
  await page.click('tr[data-route="restaurant"]');
  await page.waitForSelector('#route-detail');
  await page.waitForFunction(() => document.querySelector('.source-lines')?.textContent.includes('package routes.restaurant'));
  check((await text(page, '.tests')).includes('data.routes.restaurant_test'), 'the route shows its tests');
  await shot(page, 'routes');

  // Playground: the same decision verify would make, for a described caller.
  await open(page, 'playground', '#playground-form');
  await page.fill('input[name=url]', 'https://apps.example.com/marketing/plan');
  await page.fill('input[name=email]', 'erin@example.com');
  await page.fill('input[name=groups]', 'marketing');
  await page.click('#decide');
  await page.waitForSelector('#decision .verdict');
  check((await text(page, '#decision .verdict-head')).includes('allow'), 'marketing may read marketing');
  await page.fill('input[name=groups]', 'staff');
  await page.click('#decide');
  await page.waitForFunction(() => document.querySelector('#decision .verdict-head')?.textContent.includes('not_in_marketing'));
  check((await text(page, '#decision .verdict-head')).includes('deny'), 'staff may not');
  await shot(page, 'playground');

  // Impact: an uploaded bundle letting staff into marketing changes dave's denials.
  await open(page, 'impact', '#impact-upload');
  await page.setInputFiles('input[name=bundle]', env.CANDIDATE_TARBALL);
  await page.click('#impact-upload');
  await page.waitForSelector('#impact-summary');
  const impact = await text(page, '#impact');
  check(/[1-9]\d* would change/.test(impact), `the candidate changes decisions: ${impact}`);
  check(impact.includes('marketing') && impact.includes('dave@example.com'), 'grouped by route, with the user');
  await shot(page, 'impact');

  // Reloads the console did not ask for (the file watcher's) are announced as they happen:
  // a refused edit with its file:line:col, an activation with its impact.
  const live = env.POLICIES_DIR;
  const liveVersion = () => page.evaluate(() => document.querySelector('#bundle-chip code')?.textContent);
  const originalVersion = await liveVersion();
  check(originalVersion, 'the top bar shows the live version');
  await fs.writeFile(path.join(live, 'broken.rego'), 'package routes.broken\n\nallow if {\n');
  await page.waitForSelector('#reload-notice[data-result="refused"]', {timeout: 60000});
  check(/broken\.rego:\d+:\d+/.test(await text(page, '#reload-notice')), 'the refusal names file:line:col');
  check(await liveVersion() === originalVersion, 'the refused edit is not live');
  await shot(page, 'reload-refused');
  await fs.rm(path.join(live, 'broken.rego'));
  // The candidate's marketing policy goes live (without its tests, which it would fail).
  // The watcher may load the steps in between; each is a valid bundle.
  const originals = {};
  for (const name of ['marketing.rego', 'marketing_test.rego']) originals[name] = await fs.readFile(path.join(live, name), 'utf8');
  await fs.rm(path.join(live, 'marketing_test.rego'));
  await fs.writeFile(path.join(live, 'marketing.rego'), await fs.readFile(path.join(env.CANDIDATE_DIR, 'marketing.rego'), 'utf8'));
  await page.waitForFunction(() => /[1-9]\d* of [\d,]+ audited requests/.test(
    document.querySelector('#reload-notice[data-result="activated"] #reload-impact-summary')?.textContent ?? ''), null, {timeout: 60000});
  check((await text(page, '#reload-notice')).includes('replacing'), 'the notice names the bundle it replaced');
  await shot(page, 'reload-activated');
  // Put the live policy back before the rest relies on it: the same files, the same version.
  await fs.writeFile(path.join(live, 'marketing.rego'), originals['marketing.rego']);
  await fs.writeFile(path.join(live, 'marketing_test.rego'), originals['marketing_test.rego']);
  await page.waitForFunction((v) => document.querySelector('#bundle-chip code')?.textContent === v, originalVersion, {timeout: 60000});

  // Audit: filter, keyset pages, a record's details, export, replay.
  await open(page, 'audit', '#audit-filters');
  await page.fill('input[name=user]', 'dave@example.com');
  await page.selectOption('select[name=decision]', 'deny');
  await page.click('#audit-filters button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#audit-table tbody tr.clickable').length === 3);
  await page.click('#audit-table tbody tr.clickable');
  await page.waitForSelector('#audit-detail .defs');
  const csvHref = await page.getAttribute('#export-csv', 'href');
  check(csvHref.includes('format=csv') && csvHref.includes('decision=deny'), `export keeps the filters: ${csvHref}`);
  const csv = await page.evaluate(async (href) => (await fetch(href)).text(), csvHref);
  check(csv.split('\n').filter((l) => l.includes('dave@example.com')).length === 3, `CSV export: ${csv}`);
  const jsonl = await page.evaluate(async (href) => (await fetch(href)).text(), await page.getAttribute('#export-jsonl', 'href'));
  check(jsonl.trim().split('\n').every((l) => JSON.parse(l).decision === 'deny'), 'JSON-lines export');
  await shot(page, 'audit');
  await page.click('#replay-record');
  await page.waitForSelector('#decision .verdict');
  check((await text(page, '#decision')).includes('not_in_marketing'), 'the replayed record is still refused');

  // Sessions: revoke dave's; verify turns it away at once.
  check(await verifyVictim() === 200, 'the victim session works before');
  await open(page, 'sessions', '#sessions-filter');
  await page.fill('#sessions-filter input[name=email]', 'dave@example.com');
  await page.click('#sessions-filter button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('tr[data-session]').length === 1
    && document.querySelector('tr[data-session]').textContent.includes('dave@example.com'));
  await shot(page, 'sessions');
  await page.click('tr[data-session] button.revoke');
  await page.waitForFunction(() => document.querySelectorAll('tr[data-session]').length === 0);
  await page.waitForSelector('#flash .alert-ok');
  check(await verifyVictim() === 401, 'verify refuses the revoked session');

  // Devices: mark dave's certificate device managed, raise its trust, set its posture.
  await open(page, 'devices', '.devices-table');
  const row = 'tr[data-device]:has-text("dave@example.com")';
  await page.check(`${row} input[name=managed]`);
  await page.selectOption(`${row} select[name=trust]`, 'high');
  await page.fill(`${row} textarea[name=posture]`, '{"disk_encrypted": true}');
  await page.click(`${row} button.save-device`);
  await page.waitForFunction(() => document.querySelector('#flash .alert-ok')?.textContent.includes('saved'));
  await shot(page, 'devices');

  // A hostile value shows as text: the page never parses data as HTML.
  await page.goto(`${ADMIN}/admin/#/audit?user=${encodeURIComponent('<img src=x onerror=alert(1)>')}`);
  await page.waitForSelector('#audit-table');
  check((await page.$$('#audit-filters img, #page img')).length === 0, 'no element from data');

  // A signed-in user without the admin group gets 403, not the console.
  const other = await newContext(browser);
  const bob = await other.newPage();
  watch(bob, 'non-admin', []);
  await signIn(bob, 'bob');
  check(await text(bob, 'h1') === 'Not allowed', 'bob is refused');
  check((await bob.content()).includes('not_an_admin'), 'with the reason');
  const status = await bob.evaluate(async () => (await fetch('/admin/api/sessions')).status);
  check(status === 403, `bob's API call: ${status}`);
  await shot(bob, 'forbidden');
} catch (err) {
  failed = err;
} finally {
  await browser.close();
}
console.log(JSON.stringify({steps, console_errors: consoleErrors, csp_violations: cspViolations, error: failed ? String(failed.stack || failed) : null}));
if (failed) process.exit(1);
