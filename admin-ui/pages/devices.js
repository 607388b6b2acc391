// Devices: client-certificate and browser devices; mark one managed, set its trust, edit
// its posture document (what policies read as input.device).

import * as api from '../api.js';
import {h, card, table, code, field, button, when} from '../dom.js';

export default {
  title: 'Devices',
  subtitle: 'What policies see as input.device: registered, managed, trust and posture.',
  async render(params, ui) {
    const email = params.email || '';
    const data = await api.get(`/admin/api/devices${api.query({email})}`);
    const input = h('input', {type: 'email', name: 'email', value: email, placeholder: 'owner email'});
    const form = h('form', {class: 'form-inline', on: {submit: (e) => {
      e.preventDefault(); ui.go('devices', {email: input.value.trim()});
    }}}, field('Owner', input), h('button', {type: 'submit', class: 'btn btn-primary'}, 'Filter'),
    email ? h('a', {class: 'btn btn-link', href: '#/devices'}, 'All devices') : null);

    const rows = data.items.map((d) => {
      const managed = h('input', {type: 'checkbox', name: 'managed', checked: d.managed});
      const trust = h('select', {name: 'trust'}, ['low', 'medium', 'high'].map((t) => h('option', {value: t, selected: t === d.trust}, t)));
      const posture = h('textarea', {name: 'posture', rows: 2, class: 'mono', spellcheck: 'false'}, JSON.stringify(d.posture ?? {}));
      const save = button('Save', async (event) => {
        let parsed;
        try { parsed = JSON.parse(posture.value || '{}'); } catch {
          ui.flash('Posture must be a JSON object.', 'error');
          return;
        }
        event.target.disabled = true;
        try {
          await api.patch(`/admin/api/devices/${encodeURIComponent(d.id)}`, {managed: managed.checked, trust: trust.value, posture: parsed});
          ui.flash(`Device ${d.id.slice(0, 8)} saved.`);
        } catch (err) {
          ui.flash(String(err.message), 'error');
        }
        event.target.disabled = false;
      }, 'primary', {class: ['btn', 'btn-primary', 'save-device']});
      return h('tr', {'data-device': d.id},
        h('td', {}, code(d.id.slice(0, 8)), h('div', {class: 'muted small'}, `${d.browser ? 'browser' : 'certificate'} · ${d.registered ? 'registered' : 'unregistered'}`)),
        h('td', {}, d.email ?? h('span', {class: 'muted'}, 'no owner')),
        h('td', {class: 'mono small', title: d.cert_fingerprint ?? ''}, d.cert_fingerprint ? `${d.cert_fingerprint.slice(0, 14)}…` : '—'),
        h('td', {}, h('label', {class: 'check'}, managed, ' managed')),
        h('td', {}, trust),
        h('td', {class: 'posture'}, posture),
        h('td', {}, when(d.last_seen_at ?? d.created_at)),
        h('td', {class: 'right'}, save));
    });
    return h('div', {class: 'stack'},
      card(null, form),
      card(h('div', {class: 'card-title-row'}, h('h2', {}, 'Devices'), h('span', {class: 'muted'}, String(data.items.length))),
        table(['Device', 'Owner', 'Certificate', 'Managed', 'Trust', 'Posture', 'Last seen', ''], rows,
          {empty: 'No device is known yet.', class: 'devices-table'})));
  },
};
