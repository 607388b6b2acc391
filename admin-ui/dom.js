// DOM helpers. Everything the console shows is built as elements with textContent: no
// value from the API is ever parsed as HTML (docs/admin.md, "Security of the console").

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'style' || key.startsWith('on')) {
      // Inline styles and handlers are refused by the Content-Security-Policy anyway.
      throw new Error(`refusing attribute ${key}`);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('td', {class: 'num'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  build(el, {}, children);
  return el;
}

export function card(title, ...body) {
  return h('div', {class: 'card'},
    title ? h('div', {class: 'card-head'}, typeof title === 'string' ? h('h2', {}, title) : title) : null,
    h('div', {class: 'card-body'}, ...body));
}

const OUTCOMES = ['allow', 'public', 'deny', 'unauthenticated', 'bad_request', 'error'];
export {OUTCOMES};

/** A coloured label for a decision outcome (allow, deny, …) or another status word. */
export function pill(word, extra) {
  const known = OUTCOMES.includes(word) ? `pill-${word}` : 'pill-other';
  return h('span', {class: ['pill', known, extra]}, word ?? '—');
}

/** `2026-12-01 22:31:05 UTC` from an RFC 3339 time. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

/** `3 min ago` (or `in 2 h`) from an RFC 3339 time. */
export function ago(iso) {
  if (!iso) return '—';
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const abs = Math.abs(seconds);
  const unit = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.round(abs / 60), 'min']
    : abs < 86400 ? [Math.round(abs / 3600), 'h'] : [Math.round(abs / 86400), 'd'];
  return seconds >= 0 ? `${unit[0]} ${unit[1]} ago` : `in ${unit[0]} ${unit[1]}`;
}

/** A time cell: the relative time, the exact one on hover. */
export function when(iso) {
  return h('span', {title: time(iso), class: 'when'}, ago(iso));
}

export function table(headers, rows, opts = {}) {
  return h('div', {class: 'table-wrap'},
    h('table', {class: ['table', opts.class]},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows.length ? rows
        : h('tr', {}, h('td', {colspan: headers.length, class: 'empty'}, opts.empty || 'Nothing to show.')))));
}

/** A labelled form field around `control`. */
export function field(label, control, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'field-label'}, label), control,
    hint ? h('span', {class: 'field-hint'}, hint) : null);
}

export function button(label, onClick, kind = 'secondary', attrs = {}) {
  return h('button', {type: 'button', class: ['btn', `btn-${kind}`], on: {click: onClick}, ...attrs}, label);
}

export function code(text) {
  return h('code', {class: 'mono'}, text ?? '—');
}

/** Source text with line numbers; `highlight` marks one line. */
export function source(path, text, highlight) {
  const lines = String(text).split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return h('figure', {class: 'source'},
    h('figcaption', {}, path),
    h('div', {class: 'source-scroll'},
      h('table', {class: 'source-lines'}, h('tbody', {}, lines.map((line, i) =>
        h('tr', {class: i + 1 === highlight ? 'hl' : null, id: `${path}:${i + 1}`},
          h('td', {class: 'ln'}, String(i + 1)),
          h('td', {class: 'src'}, line)))))));
}

export function definitions(pairs) {
  return h('dl', {class: 'defs'}, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function loading() {
  return h('div', {class: 'loading'}, 'Loading…');
}

export function errorBox(err) {
  return h('div', {class: 'alert alert-error'}, h('strong', {}, 'Error: '), String(err.message || err));
}
