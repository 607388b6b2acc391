// Overview: the live bundle and its last reload error, decisions per minute over the last
// hour, the most denied routes and users, the audit pipeline, and recent admin changes.

import * as api from '../api.js';
import {h, card, table, when, code, button, pill} from '../dom.js';
import {decisionsChart} from '../chart.js';

export default {
  title: 'Overview',
  subtitle: 'What is loaded, what is being decided, and what changed.',
  async render(_params, ui) {
    const [bundle, stats, actions] = await Promise.all([
      api.get('/admin/api/bundle'),
      api.get('/admin/api/stats?window=1h'),
      api.get('/admin/api/actions'),
    ]);
    const total = stats.per_minute.reduce((a, r) => a + r.count, 0);
    const denied = stats.per_minute.filter((r) => r.decision === 'deny').reduce((a, r) => a + r.count, 0);
    const audit = stats.audit;
    const healthy = audit.spool_pending === 0 && audit.dropped === 0;

    const reloadButton = button('Reload now', async (event) => {
      event.target.disabled = true;
      try {
        const r = await api.post('/admin/api/reload');
        if (r.result === 'refused') ui.flash(`Reload refused: ${r.error}`, 'error');
        else ui.flash(`Reload: ${r.result} (version ${r.version})`);
        ui.refreshChip();
        await ui.bundleSeen();
        // An activation or a refusal shows its impact at once (docs/admin.md).
        if (r.result === 'activated') ui.go('impact', {against: 'previous', keepFlash: 1});
        else if (r.result === 'refused') ui.go('impact', {bundle: 'disk', keepFlash: 1});
        else ui.go('overview', {t: Date.now(), keepFlash: 1});
      } catch (err) {
        ui.flash(String(err.message), 'error');
        event.target.disabled = false;
      }
    }, 'primary', {id: 'reload'});

    return h('div', {class: 'stack'},
      bundle.last_error ? h('div', {class: 'alert alert-error', id: 'reload-error'},
        h('div', {class: 'alert-title'}, 'The last reload was refused ',
          bundle.last_error_at ? when(bundle.last_error_at) : null,
          ' — the previous bundle keeps serving.'),
        h('pre', {class: 'mono error-text'}, bundle.last_error),
        h('a', {href: '#/impact?bundle=disk'}, 'Preview what the files on disk would change →')) : null,
      h('div', {class: 'tiles'},
        tile('Live bundle', code(bundle.version), [
          `${bundle.routes} routes · ${bundle.files.length} files`,
          h('br'), 'loaded ', when(bundle.loaded_at),
        ], reloadButton),
        tile('Decisions · last hour', h('span', {class: 'big'}, total.toLocaleString()), [
          h('span', {class: 'deny-text'}, `${denied.toLocaleString()} denied`),
          ` · ${total ? Math.round((denied / total) * 100) : 0}% of all`,
        ], h('a', {href: '#/audit'}, 'Search the audit trail →')),
        tile('Audit pipeline', h('span', {class: 'big'}, healthy ? 'healthy' : 'degraded'), [
          `queue ${audit.queue_depth} · spool ${audit.spool_pending} · dropped ${audit.dropped}`,
        ], h('a', {href: '/readyz'}, 'Readiness details →'), healthy ? 'tile-ok' : 'tile-warn'),
        tile('Sessions & devices', h('span', {class: 'big'}, '→'), [
          'Revoke sessions, mark devices managed, set trust.',
        ], h('span', {}, h('a', {href: '#/sessions'}, 'Sessions'), ' · ', h('a', {href: '#/devices'}, 'Devices')))),
      card(h('div', {class: 'card-title-row'}, h('h2', {}, 'Decisions per minute'),
        h('span', {class: 'muted'}, 'last hour, by outcome (UTC)')),
        decisionsChart(stats.per_minute, stats.since, stats.now)),
      h('div', {class: 'grid-2'},
        card('Most denied routes', table(['Route', 'Denials'], stats.top_denied_routes.map((r) =>
          h('tr', {}, h('td', {}, h('a', {href: `#/audit${api.query({route: r.name, decision: 'deny'})}`}, r.name)),
            h('td', {class: 'num'}, String(r.count)))), {empty: 'No denials in the last hour.'})),
        card('Most denied users', table(['User', 'Denials'], stats.top_denied_users.map((r) =>
          h('tr', {}, h('td', {}, h('a', {href: `#/audit${api.query({user: r.name, decision: 'deny'})}`}, r.name)),
            h('td', {class: 'num'}, String(r.count)))), {empty: 'No denials in the last hour.'}))),
      card('Recent admin changes', table(['When', 'Who', 'Action', 'Target', 'Detail'],
        actions.items.map((a) => h('tr', {},
          h('td', {}, when(a.time)), h('td', {}, a.actor), h('td', {}, pill(a.action)),
          h('td', {class: 'mono'}, a.target ?? '—'),
          h('td', {class: 'mono detail'}, JSON.stringify(a.detail)))),
        {empty: 'No admin changes yet.'})));
  },
};

function tile(label, value, lines, footer, extra) {
  return h('div', {class: ['tile', extra]},
    h('div', {class: 'tile-label'}, label),
    h('div', {class: 'tile-value'}, value),
    h('div', {class: 'tile-lines'}, lines),
    footer ? h('div', {class: 'tile-foot'}, footer) : null);
}
