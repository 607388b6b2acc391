// Policy impact preview: re-decide the audited requests of the last hours against a
// candidate bundle (the files on disk, an uploaded .tar.gz, or — after an activation — the
// live bundle against the one it replaced), users as they are now, and list the requests
// whose outcome would change, grouped by route. `gatehouse policy impact DIR` does the same.

import * as api from '../api.js';
import {h, card, table, code, pill, field, button, when, errorBox} from '../dom.js';

export default {
  title: 'Impact preview',
  subtitle: 'What a policy change will do to real traffic, before it goes live.',
  async render(params) {
    const bundle = await api.get('/admin/api/bundle');
    const out = h('div', {id: 'impact', class: 'stack'});
    const since = h('select', {name: 'since'}, ['1h', '6h', '24h', '72h', '168h'].map((v) =>
      h('option', {value: v, selected: v === (params.since || '24h')}, `last ${v}`)));
    const limit = h('input', {type: 'number', name: 'limit', min: 1, max: 100000, value: params.limit || 10000});
    const upload = h('input', {type: 'file', name: 'bundle', accept: '.tar.gz,.tgz,application/gzip'});

    const run = async (what) => {
      out.replaceChildren(h('div', {class: 'loading'}, 'Re-deciding audited requests…'));
      const q = api.query({since: since.value, limit: limit.value, against: what === 'previous' ? 'previous' : null});
      try {
        let r;
        if (what === 'upload') {
          const file = upload.files[0];
          if (!file) throw new Error('choose a .tar.gz bundle first');
          r = await api.post(`/admin/api/impact${q}`, file, 'application/gzip');
        } else {
          r = await api.post(`/admin/api/impact${q}`);
        }
        out.replaceChildren(report(r));
      } catch (err) {
        out.replaceChildren(errorBox(err));
      }
    };

    const form = h('div', {class: 'form'},
      h('div', {class: 'form-row'}, field('Audited requests of', since), field('At most', limit)),
      h('div', {class: 'choices'},
        h('div', {class: 'choice'}, h('h3', {}, 'The bundle on disk'),
          h('p', {class: 'muted'}, 'An edit that has not loaded yet, or a reload that was refused.'),
          button('Preview files on disk', () => run('disk'), 'primary', {id: 'impact-disk'})),
        h('div', {class: 'choice'}, h('h3', {}, 'An uploaded bundle'),
          h('p', {class: 'muted'}, 'A .tar.gz of routes.yaml and the .rego files.'), upload,
          button('Preview upload', () => run('upload'), 'secondary', {id: 'impact-upload'})),
        h('div', {class: 'choice'}, h('h3', {}, 'The last activation'),
          h('p', {class: 'muted'}, bundle.previous_version
            ? h('span', {}, 'Live ', code(bundle.version), ' against the replaced ', code(bundle.previous_version), '.')
            : 'No bundle has been replaced since this process started.'),
          button('Preview last activation', () => run('previous'), 'secondary',
            {id: 'impact-previous', disabled: !bundle.previous_version}))));

    if (params.bundle === 'disk') run('disk');
    else if (params.against === 'previous' && bundle.previous_version) run('previous');
    else out.append(h('p', {class: 'muted'}, 'Choose a candidate bundle to preview.'));
    return h('div', {class: 'stack'}, card('Candidate bundle', form), out);
  },
};

function outcome(o) {
  return h('span', {class: 'outcome'}, pill(o.outcome, 'small'), ` ${o.status}`, o.reason ? h('span', {class: 'muted'}, ` ${o.reason}`) : null);
}

function report(r) {
  if (r.error) {
    return h('div', {class: 'alert alert-error'}, h('div', {class: 'alert-title'}, 'The candidate bundle is refused'),
      h('pre', {class: 'mono error-text'}, r.error));
  }
  const head = h('div', {class: 'summary-row', id: 'impact-summary'},
    h('span', {}, 'Candidate ', code(r.candidate_version), ' against ', code(r.baseline_version)),
    h('span', {}, `${r.evaluated.toLocaleString()} audited requests re-decided`),
    h('span', {class: r.changed ? 'deny-text' : 'ok-text'}, `${r.changed} would change`),
    r.truncated ? h('span', {class: 'muted'}, '(limit reached: older requests not re-decided)') : null);
  if (!r.routes.length) {
    return h('div', {class: 'stack'}, head, h('div', {class: 'alert alert-ok'}, 'No audited request would be decided differently.'));
  }
  return h('div', {class: 'stack'}, head, r.routes.map((g) => card(
    h('div', {class: 'card-title-row'}, h('h2', {}, g.route), h('span', {class: 'muted'}, `${g.changes.length} change${g.changes.length === 1 ? '' : 's'}`)),
    table(['When', 'User', 'Request', 'Now', 'With the candidate'], g.changes.map((c) => h('tr', {},
      h('td', {}, when(c.time)),
      h('td', {}, c.email ?? h('span', {class: 'muted'}, 'anonymous')),
      h('td', {class: 'mono wrap'}, `${c.method} ${c.host ?? ''}${c.path}`),
      h('td', {}, outcome(c.before)),
      h('td', {}, outcome(c.after))))))));
}
