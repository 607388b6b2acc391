// Decision playground: a request and a caller → the decision exactly as verify would make it
// (same code path, not audited). "Replay" decides an audited request again against the
// live bundle, with the user as they are now.

import * as api from '../api.js';
import {h, card, table, code, pill, field, button, definitions, errorBox, when} from '../dom.js';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

export default {
  title: 'Decision playground',
  subtitle: 'Ask the live bundle what it would answer — nothing is audited or changed.',
  async render(params) {
    const routes = await api.get('/admin/api/routes');
    const result = h('div', {id: 'decision', class: 'stack'},
      h('p', {class: 'muted'}, 'Fill in the request and press Decide.'));
    const f = {
      url: h('input', {type: 'url', name: 'url', required: true, value: params.url || 'https://apps.example.com/restaurant/orders', class: 'mono'}),
      method: h('select', {name: 'method'}, METHODS.map((m) => h('option', {value: m, selected: m === (params.method || 'GET')}, m))),
      anonymous: h('input', {type: 'checkbox', name: 'anonymous'}),
      email: h('input', {type: 'email', name: 'email', value: params.user || 'ann@example.com'}),
      groups: h('input', {type: 'text', name: 'groups', value: params.groups ?? 'staff, kitchen', placeholder: 'staff, kitchen'}),
      tenants: h('input', {type: 'text', name: 'tenants', value: params.tenants ?? '', placeholder: 'acme:admin, globex'}),
      device: h('select', {name: 'device'}, [['none', 'no known device'], ['unmanaged', 'registered, unmanaged'], ['managed', 'registered, managed']]
        .map(([v, l]) => h('option', {value: v}, l))),
      trust: h('select', {name: 'trust'}, ['low', 'medium', 'high'].map((t) => h('option', {value: t}, t))),
      time: h('input', {type: 'datetime-local', name: 'time', step: 1}),
    };
    const routePick = h('select', {name: 'route', on: {change: () => {
      const r = routes.routes.find((x) => x.name === routePick.value);
      if (r && r.path) f.url.value = `https://${(r.host || 'apps.example.com').replace(/\{[^}]+\}/g, 'acme')}${r.path.replace(/\{[^}]+\}/g, 'x')}`;
    }}}, h('option', {value: ''}, '— fill the URL from a route —'),
    routes.routes.filter((r) => r.path).map((r) => h('option', {value: r.name}, r.name)));

    const decide = async (body) => {
      result.replaceChildren(h('div', {class: 'loading'}, 'Deciding…'));
      try {
        const d = await api.post('/admin/api/decide', body);
        result.replaceChildren(verdict(d));
      } catch (err) {
        result.replaceChildren(errorBox(err));
      }
    };
    const form = h('form', {class: 'form', id: 'playground-form', on: {submit: (e) => { e.preventDefault(); decide(describe(f)); }}},
      h('fieldset', {}, h('legend', {}, 'Request'),
        field('Route', routePick),
        field('URL', f.url, 'As the browser asked it: scheme, host, path and query.'),
        field('Method', f.method)),
      h('fieldset', {}, h('legend', {}, 'User'),
        h('label', {class: 'check'}, f.anonymous, ' No session (anonymous)'),
        field('Email', f.email),
        field('Groups', f.groups, 'Comma-separated.'),
        field('Tenants', f.tenants, 'Comma-separated; tenant:role for a role.')),
      h('fieldset', {}, h('legend', {}, 'Device and time'),
        field('Device', f.device),
        field('Trust', f.trust),
        field('Time (UTC)', f.time, 'Empty: now.')),
      h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'btn btn-primary', id: 'decide'}, 'Decide')));

    const auditId = h('input', {type: 'text', name: 'audit_id', value: params.audit_id || '', class: 'mono', placeholder: 'audit record id'});
    const replay = h('div', {class: 'form-inline'}, field('Audit record', auditId),
      button('Replay against the live bundle', () => decide({audit_id: auditId.value.trim()}), 'secondary', {id: 'replay'}));

    if (params.audit_id) decide({audit_id: params.audit_id});
    return h('div', {class: 'grid-play'},
      h('div', {class: 'stack'}, card('Describe a request', form), card('Replay an audited request', replay)),
      h('div', {class: 'stack'}, card('Decision', result)));
  },
};

/** The playground's description of a request (docs/admin.md). */
function describe(f) {
  const body = {url: f.url.value.trim(), method: f.method.value};
  if (!f.anonymous.checked) {
    const tenants = {};
    for (const t of f.tenants.value.split(',').map((x) => x.trim()).filter(Boolean)) {
      const [id, role] = t.split(':');
      tenants[id.trim()] = (role || 'member').trim();
    }
    body.user = {
      email: f.email.value.trim(),
      groups: f.groups.value.split(',').map((x) => x.trim()).filter(Boolean),
      tenants,
    };
  }
  if (f.device.value !== 'none') body.device = {managed: f.device.value === 'managed', trust: f.trust.value};
  if (f.time.value) body.time = new Date(`${f.time.value}Z`).toISOString();
  return body;
}

function headerRows(headers) {
  const list = Array.isArray(headers) ? headers : Object.entries(headers || {});
  return list.map(([k, v]) => h('tr', {}, h('td', {class: 'mono'}, k), h('td', {class: 'mono wrap'}, v)));
}

function verdict(result) {
  const d = result.answer;
  const was = result.replayed;
  return h('div', {class: 'stack verdict'},
    h('div', {class: 'verdict-head'}, pill(d.outcome, 'large'), h('span', {class: 'status'}, `HTTP ${d.status}`),
      d.reason ? h('span', {class: 'reason'}, 'reason ', code(d.reason)) : null),
    definitions([
      ['Route', h('a', {href: `#/routes${api.query({route: d.route})}`}, d.route)],
      ['Decided', code(`${d.method} ${d.host ?? ''}${d.path}`)],
      ['Tenant', d.tenant],
      ['Bundle', code(d.bundle_version)],
      was ? ['Replayed record', h('span', {}, code(String(was.id)), ' of ', when(was.time))] : null,
      was ? ['Audited then', h('span', {}, pill(was.decision, 'small'), ` HTTP ${was.status}`, was.reason ? ` · ${was.reason}` : '')] : null,
      was ? ['User now', result.described.user
        ? `${result.described.user.email} · ${result.described.user.groups.join(', ') || 'no groups'}`
        : 'nobody (no session, or the user no longer exists)'] : null,
    ].filter(Boolean)),
    h('h3', {}, 'Response headers'),
    table(['Header', 'Value'], headerRows(d.headers), {empty: 'No headers.'}));
}
