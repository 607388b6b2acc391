// Routes and policies: every route of the live bundle, its engine and policy, the source
// it runs with line numbers, and its tests' results.

import * as api from '../api.js';
import {h, card, table, code, pill, source, definitions} from '../dom.js';

const TEST_CLASS = {pass: 'pill-allow', skipped: 'pill-bad_request'};

export default {
  title: 'Routes & policies',
  subtitle: 'The live bundle: which route answers which request, and the policy that decides it.',
  async render(params) {
    const data = await api.get('/admin/api/routes');
    const selected = params.route || null;
    const rows = data.routes.map((r) => {
      const passed = r.tests.filter((t) => t.outcome === 'pass').length;
      const run = r.tests.filter((t) => t.outcome !== 'skipped').length;
      return h('tr', {class: ['clickable', r.name === selected ? 'selected' : null], 'data-route': r.name,
        on: {click: () => { window.location.hash = `#/routes${api.query({route: r.name})}`; }}},
        h('td', {}, h('a', {href: `#/routes${api.query({route: r.name})}`}, r.name)),
        h('td', {class: 'mono'}, r.host ?? h('span', {class: 'muted'}, 'any host')),
        h('td', {class: 'mono'}, r.path ?? h('span', {class: 'muted'}, 'by name')),
        h('td', {}, h('span', {class: ['engine', `engine-${r.engine}`]}, r.engine)),
        h('td', {class: 'mono wrap'}, r.package ?? r.expression ?? '—'),
        h('td', {}, run
          ? h('span', {class: passed === run ? 'ok-text' : 'deny-text'}, `${passed}/${run} pass`)
          : h('span', {class: 'muted'}, r.engine === 'rego' ? 'no tests' : '—')));
    });
    const route = data.routes.find((r) => r.name === selected);
    return h('div', {class: 'stack'},
      h('div', {class: 'summary-row'},
        h('span', {}, 'Bundle ', code(data.version)),
        h('span', {}, `${data.routes.length} routes`),
        h('span', {}, 'unmatched requests: ', pill(data.default === 'deny' ? 'deny' : 'allow', 'small'), ` ${data.default}`),
        h('span', {}, 'tests: ', h('span', {class: data.tests.failed ? 'deny-text' : 'ok-text'},
          `${data.tests.passed} passed, ${data.tests.failed} failed`))),
      card(null, table(['Route', 'Host', 'Path', 'Engine', 'Policy', 'Tests'], rows, {class: 'routes-table'})),
      route ? detail(route) : h('p', {class: 'muted'}, 'Select a route to see its policy source and tests.'),
      data.routes_yaml ? h('details', {class: 'card'},
        h('summary', {class: 'card-head'}, h('h2', {}, 'routes.yaml')),
        h('div', {class: 'card-body'}, source(data.routes_yaml.path, data.routes_yaml.text))) : null);
  },
};

function detail(r) {
  return card(h('div', {class: 'card-title-row'}, h('h2', {id: 'route-detail'}, `Route ${r.name}`),
    h('a', {class: 'btn btn-secondary', href: `#/playground${api.query({url: exampleUrl(r)})}`}, 'Try it in the playground')),
  h('div', {class: 'grid-2'},
    definitions([
      ['Engine', r.engine],
      ['Host', r.host ? code(r.host) : 'any host'],
      ['Path', r.path ? code(r.path) : 'matched by name only'],
      [r.engine === 'cel' ? 'Expression' : 'Package', code(r.package ?? r.expression ?? '—')],
      ['Tenant', r.tenant],
      ['Upstream (proxy)', r.upstream],
      ['Login redirect', r.login_redirect ? 'yes' : 'no'],
      ['Declared headers', r.headers?.length ? r.headers.join(', ') : 'any X- header'],
    ]),
    h('div', {}, h('h3', {}, 'Tests'), r.tests.length ? h('ul', {class: 'tests'}, r.tests.map((t) =>
      h('li', {}, h('span', {class: ['pill', 'small', TEST_CLASS[t.outcome] || 'pill-deny']}, t.outcome), ' ', code(t.name),
        h('span', {class: 'muted'}, ` ${t.file}:${t.line}`), t.error ? h('pre', {class: 'mono error-text'}, t.error) : null)))
      : h('p', {class: 'muted'}, r.engine === 'rego' ? 'No tests refer to this package.' : 'Not a Rego route.'))),
  r.sources.map((f) => source(f.path, f.text)),
  r.engine === 'cel' ? source('expression', r.expression) : null);
}

/** A URL that this route matches, for the playground. */
function exampleUrl(r) {
  const host = (r.host || 'apps.example.com').replace('{tenant}', 'acme').replace(/\{[^}]+\}/g, 'x');
  const path = (r.path || '/').replace(/\{[^}]+\}/g, 'x');
  return `https://${host}${path}`;
}
