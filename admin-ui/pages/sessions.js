// Sessions: who is signed in (user, device, address, created, last seen), revoke one or all
// of a user's. A revoked session is refused by verify at once.

import * as api from '../api.js';
import {h, card, table, code, field, button, when} from '../dom.js';

export default {
  title: 'Sessions',
  subtitle: 'Active sessions; a revocation takes effect on every replica within a second.',
  async render(params, ui) {
    const email = params.email || '';
    const data = await api.get(`/admin/api/sessions${api.query({email})}`);
    const input = h('input', {type: 'email', name: 'email', value: email, placeholder: 'user email'});
    const form = h('form', {class: 'form-inline', id: 'sessions-filter', on: {submit: (e) => {
      e.preventDefault(); ui.go('sessions', {email: input.value.trim()});
    }}}, field('User', input), h('button', {type: 'submit', class: 'btn btn-primary'}, 'Filter'),
    email ? h('a', {class: 'btn btn-link', href: '#/sessions'}, 'All users') : null,
    email ? button(`Revoke all of ${email}'s sessions`, async () => {
      if (!window.confirm(`Revoke every session of ${email}?`)) return;
      const r = await api.post('/admin/api/sessions/revoke', {email});
      ui.flash(`Revoked ${r.revoked} session${r.revoked === 1 ? '' : 's'} of ${email}.`);
      ui.go('sessions', {email, t: Date.now(), keepFlash: 1});
    }, 'danger', {id: 'revoke-all'}) : null);

    const rows = data.items.map((s) => h('tr', {'data-session': s.id},
      h('td', {}, h('div', {}, h('a', {href: `#/sessions${api.query({email: s.email})}`}, s.email)), s.name ? h('div', {class: 'muted small'}, s.name) : null),
      h('td', {class: 'mono'}, s.device_id ? h('a', {href: `#/devices${api.query({email: s.email})}`}, short(s.device_id)) : h('span', {class: 'muted'}, 'none')),
      h('td', {class: 'mono'}, s.ip ?? '—'),
      h('td', {}, when(s.created_at)),
      h('td', {}, when(s.last_seen_at)),
      h('td', {}, when(s.expires_at)),
      h('td', {class: 'right'}, button('Revoke', async (event) => {
        if (!window.confirm(`Revoke this session of ${s.email}?`)) return;
        event.target.disabled = true;
        try {
          await api.del(`/admin/api/sessions/${encodeURIComponent(s.id)}`);
          ui.flash(`Session of ${s.email} revoked.`);
          event.target.closest('tr').remove();
        } catch (err) {
          ui.flash(String(err.message), 'error');
          event.target.disabled = false;
        }
      }, 'danger-outline', {class: ['btn', 'btn-danger-outline', 'revoke']}))));
    return h('div', {class: 'stack'},
      card(null, form),
      card(h('div', {class: 'card-title-row'}, h('h2', {}, email ? `Sessions of ${email}` : 'Active sessions'),
        h('span', {class: 'muted'}, `${data.items.length}${data.items.length >= data.limit ? '+' : ''}`)),
      table(['User', 'Device', 'Address', 'Created', 'Last seen', 'Expires', ''], rows, {empty: 'No active session.', class: 'sessions-table'})));
  },
};

function short(id) {
  return code(id.length > 13 ? `${id.slice(0, 8)}…` : id);
}
