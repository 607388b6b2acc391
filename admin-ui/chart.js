// Decisions per minute by outcome as a stacked bar chart, drawn as SVG elements (colours
// come from the stylesheet's classes, so the chart needs no inline style).

import {h, s, OUTCOMES} from './dom.js';

const W = 960;
const H = 240;
const PAD = {left: 44, right: 12, top: 12, bottom: 28};

/**
 * `perMinute`: [{minute: 'YYYY-MM-DDTHH:MM:00Z', decision, count}], `since`/`now`: the window.
 */
export function decisionsChart(perMinute, since, now) {
  const start = Math.floor(new Date(since).getTime() / 60000);
  const end = Math.floor(new Date(now).getTime() / 60000);
  const minutes = Math.max(1, end - start + 1);
  const buckets = Array.from({length: minutes}, () => ({}));
  for (const row of perMinute) {
    const i = Math.floor(new Date(row.minute).getTime() / 60000) - start;
    if (i >= 0 && i < minutes) buckets[i][row.decision] = (buckets[i][row.decision] || 0) + row.count;
  }
  const totals = buckets.map((b) => Object.values(b).reduce((a, c) => a + c, 0));
  const max = niceMax(Math.max(1, ...totals));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const bw = plotW / minutes;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;

  const grid = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    grid.push(s('line', {x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid'}));
    grid.push(s('text', {x: PAD.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'}, String(Math.round(v))));
  }
  const bars = [];
  buckets.forEach((b, i) => {
    let acc = 0;
    for (const outcome of OUTCOMES) {
      const n = b[outcome] || 0;
      if (!n) continue;
      const top = y(acc + n);
      bars.push(s('rect', {
        x: PAD.left + i * bw + 0.5, y: top, width: Math.max(1, bw - 1), height: y(acc) - top,
        class: `bar bar-${outcome}`,
      }, s('title', {}, `${minuteLabel(start + i)} — ${outcome}: ${n}`)));
      acc += n;
    }
  });
  const ticks = [];
  const step = minutes > 120 ? 60 : minutes > 30 ? 10 : 5;
  for (let m = start; m <= end; m++) {
    if (m % step !== 0) continue;
    const x = PAD.left + (m - start) * bw + bw / 2;
    ticks.push(s('text', {x, y: H - 8, class: 'axis', 'text-anchor': 'middle'}, minuteLabel(m)));
  }
  const total = totals.reduce((a, c) => a + c, 0);
  const byOutcome = {};
  for (const row of perMinute) byOutcome[row.decision] = (byOutcome[row.decision] || 0) + row.count;
  return h('div', {class: 'chart'},
    s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img',
      'aria-label': `Decisions per minute, ${total} in total`},
      ...grid, ...bars, ...ticks,
      s('line', {x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: 'baseline'})),
    h('div', {class: 'legend'}, OUTCOMES.map((o) =>
      h('span', {class: 'legend-item'}, h('span', {class: `swatch bar-${o}`}), `${o} `,
        h('strong', {}, String(byOutcome[o] || 0))))));
}

function minuteLabel(minute) {
  const d = new Date(minute * 60000);
  return `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 5, 10]) if (m * p >= v) return Math.max(4, m * p);
  return v;
}
