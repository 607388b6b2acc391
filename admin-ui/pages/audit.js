// Audit search: filters, keyset pagination ("Load more" continues after the last row), a
// record's details with a replay against the live bundle, and CSV / JSON-lines export of
// the same search.

import * as api from '../api.js';
import {h, card, table, code, pill, field, button, time, when, definitions, errorBox} from '../dom.js';

const DECISIONS = ['', 'allow', 'deny', 'unauthenticated', 'public', 'bad_request', 'error'];

export default {
  title: 'Audit search',
  subtitle: 'Who did what, when, and why it was allowed or refused.',
  async render(params, ui) {
    const f = {
      user: h('input', {type: 'text', name: 'user', value: params.user || '', placeholder: 'email'}),
      route: h('input', {type: 'text', name: 'route', value: params.route || '', placeholder: 'route name'}),
      decision: h('select', {name: 'decision'}, DECISIONS.map((d) => h('option', {value: d, selected: d === (params.decision || '')}, d || 'any'))),
      tenant: h('input', {type: 'text', name: 'tenant', value: params.tenant || ''}),
      since: h('input', {type: 'datetime-local', name: 'since', step: 1, value: params.since ? local(params.since) : ''}),
      until: h('input', {type: 'datetime-local', name: 'until', step: 1, value: params.until ? local(params.until) : ''}),
    };
    const filters = () => ({
      user: f.user.value.trim(), route: f.route.value.trim(), decision: f.decision.value,
      tenant: f.tenant.value.trim(),
      since: f.since.value ? new Date(`${f.since.value}Z`).toISOString() : '',
      until: f.until.value ? new Date(`${f.until.value}Z`).toISOString() : '',
    });
    const current = {user: params.user, route: params.route, decision: params.decision, tenant: params.tenant, since: params.since, until: params.until};
    const body = h('tbody', {});
    const detail = h('div', {id: 'audit-detail'});
    const more = h('button', {type: 'button', class: 'btn btn-secondary', id: 'load-more', disabled: true}, 'Load more');
    const count = h('span', {class: 'muted', id: 'audit-count'}, '');
    let cursor = null;
    let shown = 0;

    const load = async () => {
      more.disabled = true;
      const page = await api.get(`/admin/api/audit${api.query({...current, cursor, format: 'json'})}`);
      for (const item of page.items) body.append(row(item, () => {
        for (const tr of body.querySelectorAll('tr.selected')) tr.classList.remove('selected');
        detail.replaceChildren(itemDetail(item, ui));
      }));
      shown += page.items.length;
      cursor = page.next_cursor;
      more.disabled = !cursor;
      count.textContent = `${shown} record${shown === 1 ? '' : 's'}${cursor ? ' (more available)' : ''}`;
      if (!shown) body.append(h('tr', {}, h('td', {colspan: 7, class: 'empty'}, 'No audit record matches.')));
    };
    more.addEventListener('click', () => load().catch((err) => detail.replaceChildren(errorBox(err))));
    await load();

    const exportLink = (format, label) => h('a', {class: 'btn btn-secondary', id: `export-${format}`,
      href: `/admin/api/audit${api.query({...current, format})}`, download: `gatehouse-audit.${format === 'csv' ? 'csv' : 'jsonl'}`}, label);
    const form = h('form', {class: 'filters', id: 'audit-filters', on: {submit: (e) => { e.preventDefault(); ui.go('audit', filters()); }}},
      field('User', f.user), field('Route', f.route), field('Decision', f.decision), field('Tenant', f.tenant),
      field('Since (UTC)', f.since), field('Until (UTC)', f.until),
      h('div', {class: 'filter-actions'}, h('button', {type: 'submit', class: 'btn btn-primary'}, 'Search'),
        h('a', {class: 'btn btn-link', href: '#/audit'}, 'Clear')));
    return h('div', {class: 'stack'},
      card(null, form),
      h('div', {class: 'grid-audit'},
        card(h('div', {class: 'card-title-row'}, h('h2', {}, 'Records'), count,
          h('span', {class: 'spacer'}), exportLink('csv', 'Export CSV'), exportLink('jsonl', 'Export JSON lines')),
        h('div', {class: 'table-wrap'}, h('table', {class: 'table', id: 'audit-table'},
          h('thead', {}, h('tr', {}, ['Time', 'User', 'Route', 'Request', 'Decision', 'Status', 'Reason'].map((x) => h('th', {}, x)))),
          body)),
        h('div', {class: 'actions'}, more)),
        detail));
  },
};

function row(item, select) {
  const tr = h('tr', {class: 'clickable', on: {click: () => { select(); tr.classList.add('selected'); }}},
    h('td', {class: 'nowrap'}, h('span', {title: item.time}, time(item.time))),
    h('td', {}, item.email ?? h('span', {class: 'muted'}, '—')),
    h('td', {}, item.route ?? '—'),
    h('td', {class: 'mono wrap'}, `${item.method ?? ''} ${item.host ?? ''}${item.path ?? ''}`.trim() || item.kind),
    h('td', {}, pill(item.decision, 'small')),
    h('td', {class: 'num'}, String(item.status)),
    h('td', {class: 'mono'}, item.reason ?? ''));
  return tr;
}

function itemDetail(item, ui) {
  const pairs = Object.entries(item).map(([k, v]) => [k, v === null || v === undefined ? '—' : typeof v === 'object' ? code(JSON.stringify(v)) : String(v)]);
  const replayable = item.kind === 'verify' && item.id !== undefined;
  return card(h('div', {class: 'card-title-row'}, h('h2', {}, 'Record'), when(item.time)),
    definitions(pairs),
    replayable ? h('div', {class: 'actions'}, button('Replay against the live bundle',
      () => ui.go('playground', {audit_id: String(item.id)}), 'primary', {id: 'replay-record'})) : null);
}

/** The datetime-local value (UTC) of an RFC 3339 time. */
function local(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 19);
}
