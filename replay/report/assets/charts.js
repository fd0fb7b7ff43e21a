/* replay report charts: a small SVG chart layer with no dependencies.
 *
 * window.ReplayCharts.render(container, data) draws a whole report (the dict of
 * replay.report.report_data) into an element: the summary table, line charts of
 * the downsampled series, a buddyinfo heatmap and a pageblock ownership map per
 * run, and cost-against-benefit scatters. The primitives (line, heatmap,
 * ownership, scatter, table) are exported too. Every chart is an element with
 * data-chart="NAME"; data-drawn="1" is set once it is drawn (data-empty="1" when
 * it had nothing to draw). All numbers arrive computed (replay/metrics.py macros
 * in SQL): this file only draws them. SVG is built as text and parsed by the
 * HTML parser, which puts <svg> in the SVG namespace by itself.
 */
(function (global) {
  'use strict';

  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf',
    '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];
  var MIGRATETYPES = [
    ['Unmovable', '#d1495b'], ['Movable', '#66a182'], ['Reclaimable', '#4f86c6'],
    ['HighAtomic', '#edae49'], ['CMA', '#9b72cf'], ['Isolate', '#8d8d8d']
  ];
  var HEAT = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181],
    [8, 48, 107], [3, 19, 43]];
  // Dash patterns by run, so that runs whose lines coincide stay visible.
  var DASHES = ['', '8 4', '3 3', '12 3 3 3', '1 4', '6 2 1 2'];
  var M = {l: 64, r: 14, t: 10, b: 40};

  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  function num(v, digits) {
    if (v == null || (typeof v === 'number' && !isFinite(v))) return '';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v)) return v.toLocaleString('en-US');
    return v.toLocaleString('en-US', {maximumFractionDigits: digits == null ? 2 : digits});
  }

  function short(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return +(v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return +(v / 1e3).toFixed(1) + 'k';
    return String(+v.toFixed(3));
  }

  function ticks(lo, hi, n, integer) {
    if (!(hi > lo)) { hi = lo + 1; }
    var raw = (hi - lo) / Math.max(1, n);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = integer && mag < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
    var step = steps.map(function (f) { return f * mag; })
      .filter(function (s) { return s >= raw; })[0];
    if (integer) step = Math.max(1, Math.round(step));
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      out.push(+t.toFixed(10));
    }
    return out;
  }

  function scale(d0, d1, r0, r1) {
    var k = d1 > d0 ? (r1 - r0) / (d1 - d0) : 0;
    return function (v) { return r0 + (v - d0) * k; };
  }

  function figure(el, name, title, note) {
    var fig = document.createElement('figure');
    fig.className = 'rc-chart';
    fig.setAttribute('data-chart', name);
    var cap = '<figcaption><span class="rc-title">' + esc(title) + '</span>';
    if (note) cap += ' <span class="rc-note">' + esc(note) + '</span>';
    fig.innerHTML = cap + '</figcaption>';
    el.appendChild(fig);
    return fig;
  }

  function done(fig, empty) {
    if (empty) {
      fig.setAttribute('data-empty', '1');
      var p = document.createElement('p');
      p.className = 'rc-empty';
      p.textContent = empty;
      fig.appendChild(p);
    }
    fig.setAttribute('data-drawn', '1');
    return fig;
  }

  function width(el, fallback) {
    var w = el.clientWidth || (el.parentNode && el.parentNode.clientWidth) || fallback;
    return Math.max(320, Math.min(w, 1600));
  }

  function axes(w, h, x, y, xt, yt, xlabel, ylabel, xfmt, yfmt) {
    var s = '<g class="rc-axis">';
    yt.forEach(function (t) {
      var py = y(t).toFixed(1);
      s += '<line class="rc-gridline" x1="' + M.l + '" x2="' + (w - M.r) + '" y1="' + py +
        '" y2="' + py + '"/>';
      s += '<text x="' + (M.l - 6) + '" y="' + py + '" dy="0.32em" text-anchor="end">' +
        esc((yfmt || short)(t)) + '</text>';
    });
    xt.forEach(function (t) {
      var px = x(t).toFixed(1);
      s += '<line class="rc-tick" x1="' + px + '" x2="' + px + '" y1="' + (h - M.b) +
        '" y2="' + (h - M.b + 4) + '"/>';
      s += '<text x="' + px + '" y="' + (h - M.b + 15) + '" text-anchor="middle">' +
        esc((xfmt || short)(t)) + '</text>';
    });
    s += '<line class="rc-frame" x1="' + M.l + '" x2="' + (w - M.r) + '" y1="' + (h - M.b) +
      '" y2="' + (h - M.b) + '"/>';
    s += '<line class="rc-frame" x1="' + M.l + '" x2="' + M.l + '" y1="' + M.t + '" y2="' +
      (h - M.b) + '"/>';
    s += '<text class="rc-label" x="' + ((M.l + w - M.r) / 2) + '" y="' + (h - 4) +
      '" text-anchor="middle">' + esc(xlabel) + '</text>';
    s += '<text class="rc-label" transform="translate(12,' + ((M.t + h - M.b) / 2) +
      ') rotate(-90)" text-anchor="middle">' + esc(ylabel) + '</text>';
    return s + '</g>';
  }

  function legend(items) {
    var s = '<div class="rc-legend">';
    items.forEach(function (it) {
      s += '<span class="rc-key"><i style="background:' + esc(it.color) + '"></i>' +
        esc(it.label) + '</span>';
    });
    return s + '</div>';
  }

  function tooltip(fig) {
    var tip = document.createElement('div');
    tip.className = 'rc-tip';
    tip.style.display = 'none';
    fig.appendChild(tip);
    return {
      show: function (html, ev) {
        tip.innerHTML = html;
        tip.style.display = 'block';
        var r = fig.getBoundingClientRect();
        var left = ev.clientX - r.left + 14;
        if (left + tip.offsetWidth > r.width) left = ev.clientX - r.left - tip.offsetWidth - 14;
        tip.style.left = Math.max(0, left) + 'px';
        tip.style.top = (ev.clientY - r.top + 10) + 'px';
      },
      hide: function () { tip.style.display = 'none'; }
    };
  }

  // Pointer position in the SVG's own coordinates (the SVG scales with its box).
  function svgPoint(svg, w, h, ev) {
    var r = svg.getBoundingClientRect();
    return [(ev.clientX - r.left) * w / r.width, (ev.clientY - r.top) * h / r.height];
  }

  function bisect(xs, v) {
    var lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < v) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - v) <= Math.abs(xs[lo] - v)) lo -= 1;
    return lo;
  }

  /* A line chart. spec: {name, title, note, xLabel, yLabel, integer, yMin, yMax,
   * series: [{label, color, x: [], y: []}]} (null y values break the line). */
  function line(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    var series = spec.series.filter(function (s) {
      return s.y.some(function (v) { return v != null; });
    });
    if (!series.length) return done(fig, 'no data');
    var w = width(el, 600), h = spec.height || 250;
    var xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    series.forEach(function (s) {
      s.x.forEach(function (v, i) {
        if (s.y[i] == null) return;
        xmin = Math.min(xmin, v); xmax = Math.max(xmax, v);
        ymin = Math.min(ymin, s.y[i]); ymax = Math.max(ymax, s.y[i]);
      });
    });
    if (spec.yMin != null) ymin = Math.min(ymin, spec.yMin);
    if (spec.yMax != null) ymax = Math.max(ymax, spec.yMax);
    if (ymax === ymin) { ymax = ymin + 1; }
    if (xmax === xmin) { xmax = xmin + 1; }
    var yt = ticks(ymin, ymax, 5, spec.integer);
    ymin = Math.min(ymin, yt[0]); ymax = Math.max(ymax, yt[yt.length - 1]);
    var x = scale(xmin, xmax, M.l, w - M.r), y = scale(ymin, ymax, h - M.b, M.t);
    var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
      esc(spec.title) + '">';
    s += axes(w, h, x, y, ticks(xmin, xmax, 6, true), yt, spec.xLabel, spec.yLabel);
    series.forEach(function (sr) {
      var d = '', pen = false;
      sr.x.forEach(function (v, i) {
        var yv = sr.y[i];
        if (yv == null) { pen = false; return; }
        d += (pen ? 'L' : 'M') + x(v).toFixed(1) + ' ' + y(yv).toFixed(1);
        pen = true;
      });
      // A lone point still shows: a zero-length segment with round caps.
      if (sr.y.filter(function (v) { return v != null; }).length === 1) d += 'h0.01';
      s += '<path class="rc-line" d="' + d + '" stroke="' + esc(sr.color) + '"' +
        (sr.dash ? ' stroke-dasharray="' + sr.dash + '"' : '') + '/>';
    });
    // marks: a rug of events under the plot (failed allocations), each clickable when
    // spec.onMark is given
    (spec.marks || []).forEach(function (m, i) {
      if (m.x < xmin || m.x > xmax) return;
      s += '<line class="rc-mark" data-mark="' + i + '" x1="' + x(m.x).toFixed(1) + '" x2="' +
        x(m.x).toFixed(1) + '" y1="' + (h - M.b - 8) + '" y2="' + (h - M.b) + '" stroke="' +
        esc(m.color || '#000') + '"><title>' + esc(m.title || '') + '</title></line>';
    });
    s += '<line class="rc-cursor" x1="0" x2="0" y1="' + M.t + '" y2="' + (h - M.b) +
      '" visibility="hidden"/></svg>';
    fig.insertAdjacentHTML('beforeend', legend(series) + s);
    var svg = fig.querySelector('svg'), cursor = svg.querySelector('.rc-cursor');
    if (spec.onMark && (spec.marks || []).length) {
      fig.setAttribute('data-clickable', '1');
      svg.style.cursor = 'pointer';
      svg.addEventListener('click', function (ev) {  // the mark nearest the pointer's seq
        var p = svgPoint(svg, w, h, ev);
        var xv = xmin + (p[0] - M.l) * (xmax - xmin) / (w - M.r - M.l);
        var best = null;
        spec.marks.forEach(function (m) {
          if (best === null || Math.abs(m.x - xv) < Math.abs(best.x - xv)) best = m;
        });
        if (best) spec.onMark(best);
      });
    }
    var tip = tooltip(fig);
    svg.addEventListener('mousemove', function (ev) {
      var p = svgPoint(svg, w, h, ev);
      if (p[0] < M.l || p[0] > w - M.r) { tip.hide(); cursor.setAttribute('visibility', 'hidden'); return; }
      var xv = xmin + (p[0] - M.l) * (xmax - xmin) / (w - M.r - M.l);
      var html = '<b>' + esc(spec.xLabel) + ' ' + num(Math.round(xv)) + '</b>';
      series.forEach(function (sr) {
        var i = bisect(sr.x, xv);
        if (i < 0) return;
        html += '<br><i style="background:' + esc(sr.color) + '"></i>' + esc(sr.label) +
          ': ' + num(sr.y[i]) + ' <span class="rc-note">(seq ' + num(sr.x[i]) + ')</span>';
      });
      cursor.setAttribute('x1', p[0]); cursor.setAttribute('x2', p[0]);
      cursor.setAttribute('visibility', 'visible');
      tip.show(html, ev);
    });
    svg.addEventListener('mouseleave', function () {
      tip.hide(); cursor.setAttribute('visibility', 'hidden');
    });
    return done(fig);
  }

  function heatColor(t) {
    var f = Math.max(0, Math.min(1, t)) * (HEAT.length - 1), i = Math.min(HEAT.length - 2,
      Math.floor(f)), a = f - i;
    var c = HEAT[i].map(function (v, k) { return Math.round(v + (HEAT[i + 1][k] - v) * a); });
    return 'rgb(' + c.join(',') + ')';
  }

  function mixColor(hex, t) {  // towards black by t (0..1)
    var n = parseInt(hex.slice(1), 16);
    var c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(function (v) {
      return Math.round(v * (1 - t));
    });
    return 'rgb(' + c.join(',') + ')';
  }

  /* Cells of a grid as SVG rects, neighbouring cells of one colour in a row merged.
   * color(col, row) -> CSS colour or null (no cell). */
  function grid(ncols, nrows, x0, y0, cw, ch, color) {
    var s = '<g shape-rendering="crispEdges">';
    for (var r = 0; r < nrows; r++) {
      var start = 0, cur = color(0, r);
      for (var c = 1; c <= ncols; c++) {
        var next = c < ncols ? color(c, r) : undefined;
        if (next !== cur) {
          if (cur) {
            s += '<rect x="' + (x0 + start * cw).toFixed(2) + '" y="' +
              (y0 + (nrows - 1 - r) * ch).toFixed(2) + '" width="' + ((c - start) * cw + 0.3).toFixed(2) +
              '" height="' + (ch + 0.3).toFixed(2) + '" fill="' + cur + '"/>';
          }
          start = c; cur = next;
        }
      }
    }
    return s + '</g>';
  }

  function colTicks(seqs, x0, cw, n) {
    var out = [], step = Math.max(1, Math.ceil(seqs.length / n));
    for (var i = 0; i < seqs.length; i += step) out.push(i);
    return out.map(function (i) { return {px: x0 + (i + 0.5) * cw, label: short(seqs[i])}; });
  }

  function gridAxes(w, h, xt, rowLabels, xlabel, ylabel) {
    var s = '<g class="rc-axis">';
    xt.forEach(function (t) {
      s += '<line class="rc-tick" x1="' + t.px.toFixed(1) + '" x2="' + t.px.toFixed(1) + '" y1="' +
        (h - M.b) + '" y2="' + (h - M.b + 4) + '"/><text x="' + t.px.toFixed(1) + '" y="' +
        (h - M.b + 15) + '" text-anchor="middle">' + esc(t.label) + '</text>';
    });
    rowLabels.forEach(function (t) {
      s += '<text x="' + (M.l - 6) + '" y="' + t.py.toFixed(1) + '" dy="0.32em" text-anchor="end">' +
        esc(t.label) + '</text>';
    });
    s += '<text class="rc-label" x="' + ((M.l + w - M.r) / 2) + '" y="' + (h - 4) +
      '" text-anchor="middle">' + esc(xlabel) + '</text>';
    s += '<text class="rc-label" transform="translate(12,' + ((M.t + h - M.b) / 2) +
      ') rotate(-90)" text-anchor="middle">' + esc(ylabel) + '</text>';
    return s + '</g>';
  }

  /* Buddyinfo heatmap: orders (rows, 0 at the bottom) x time buckets (columns), colour =
   * log2(1 + pages free in blocks of that order). spec: {name, title, note, seq: [],
   * nr_free: [[11 counts] per bucket]}. */
  function heatmap(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    var cols = spec.nr_free.length;
    if (!cols) return done(fig, 'no steps with counters');
    var norders = spec.nr_free[0].length;
    var pages = spec.nr_free.map(function (row) {
      return row.map(function (n, k) { return n == null ? null : n * Math.pow(2, k); });
    });
    var max = 0;
    pages.forEach(function (row) { row.forEach(function (v) { if (v > max) max = v; }); });
    var lmax = Math.log2(1 + Math.max(1, max)), LEVELS = 32;
    var w = width(el, 600), h = spec.height || 230;
    var cw = (w - M.l - M.r) / cols, ch = (h - M.t - M.b) / norders;
    var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
      esc(spec.title) + '">';
    s += grid(cols, norders, M.l, M.t, cw, ch, function (c, r) {
      var v = pages[c][r];
      if (v == null) return null;
      return heatColor(Math.round(LEVELS * Math.log2(1 + v) / lmax) / LEVELS);
    });
    var rows = [];
    for (var k = 0; k < norders; k += (ch < 12 ? 2 : 1)) {
      rows.push({py: M.t + (norders - 0.5 - k) * ch, label: String(k)});
    }
    s += gridAxes(w, h, colTicks(spec.seq, M.l, cw, 8), rows, 'event (seq)', 'order');
    s += '</svg>';
    var keys = '<div class="rc-legend"><span class="rc-key">free pages per order, log scale: ' +
      '</span><span class="rc-ramp" style="background:linear-gradient(90deg,' +
      [0, 0.25, 0.5, 0.75, 1].map(heatColor).join(',') + ')"></span><span class="rc-key">0 .. ' +
      num(max) + ' pages</span></div>';
    fig.insertAdjacentHTML('beforeend', keys + s);
    var svg = fig.querySelector('svg'), tip = tooltip(fig);
    svg.addEventListener('mousemove', function (ev) {
      var p = svgPoint(svg, w, h, ev);
      var c = Math.floor((p[0] - M.l) / cw), r = norders - 1 - Math.floor((p[1] - M.t) / ch);
      if (c < 0 || c >= cols || r < 0 || r >= norders) { tip.hide(); return; }
      var n = spec.nr_free[c][r];
      tip.show('<b>seq ' + num(spec.seq[c]) + ', order ' + r + '</b><br>' + num(n) +
        ' free blocks = ' + num(pages[c][r]) + ' pages', ev);
    });
    svg.addEventListener('mouseleave', tip.hide);
    return done(fig);
  }

  /* Pageblock ownership map: groups of neighbouring pageblocks (rows, low pfn at the
   * bottom) x snapshots (columns); colour = the group's commonest migratetype, darker
   * the larger its share of mixed pageblocks. spec: {name, title, note, map} with map
   * from report_data (seq, rows, first_pageblock, pageblocks_per_row, mt, mixed, free;
   * cell index = column * rows + row). */
  function ownership(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    var m = spec.map;
    if (!m || !m.seq.length) return done(fig, 'no pageblock snapshots in this run');
    var cols = m.seq.length, rows = m.rows;
    var w = width(el, 600), h = spec.height || Math.max(200, Math.min(420, rows * 8 + M.t + M.b));
    var cw = (w - M.l - M.r) / cols, ch = (h - M.t - M.b) / rows;
    var present = {};
    var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
      esc(spec.title) + '">';
    s += grid(cols, rows, M.l, M.t, cw, ch, function (c, r) {
      var i = c * rows + r, mt = m.mt[i];
      if (mt == null || mt < 0) return null;
      present[mt] = true;
      var base = (MIGRATETYPES[mt] || ['?', '#444444'])[1];
      return mixColor(base, 0.7 * Math.round(m.mixed[i] / 20) / 5);
    });
    var labels = [], step = Math.max(1, Math.ceil(rows / 8));
    for (var r = 0; r < rows; r += step) {
      labels.push({py: M.t + (rows - 0.5 - r) * ch,
        label: short(m.first_pageblock + r * m.pageblocks_per_row)});
    }
    s += gridAxes(w, h, colTicks(m.seq, M.l, cw, 8), labels, 'snapshot after event (seq)',
      m.pageblocks_per_row > 1 ? 'pageblock (' + m.pageblocks_per_row + ' per row)' : 'pageblock');
    s += '</svg>';
    var items = Object.keys(present).sort().map(function (k) {
      var t = MIGRATETYPES[+k] || ['type ' + k, '#444444'];
      return {label: t[0], color: t[1]};
    });
    var keys = legend(items).replace('</div>', '<span class="rc-key">darker: more of the ' +
      'pageblocks mixed (holding pages of another type)</span><span class="rc-ramp" ' +
      'style="background:linear-gradient(90deg,' + mixColor('#66a182', 0) + ',' +
      mixColor('#66a182', 0.7) + ')"></span></div>');
    fig.insertAdjacentHTML('beforeend', keys + s);
    var svg = fig.querySelector('svg'), tip = tooltip(fig);
    svg.addEventListener('mousemove', function (ev) {
      var p = svgPoint(svg, w, h, ev);
      var c = Math.floor((p[0] - M.l) / cw), r = rows - 1 - Math.floor((p[1] - M.t) / ch);
      if (c < 0 || c >= cols || r < 0 || r >= rows) { tip.hide(); return; }
      var i = c * rows + r, pb = m.first_pageblock + r * m.pageblocks_per_row;
      var mt = MIGRATETYPES[m.mt[i]];
      tip.show('<b>seq ' + num(m.seq[c]) + ', pageblock ' + num(pb) +
        (m.pageblocks_per_row > 1 ? '..' + num(pb + m.pageblocks_per_row - 1) : '') + '</b><br>' +
        (mt ? mt[0] : 'none') + ', ' + m.mixed[i] + '% mixed, ' + m.free[i] + '% free', ev);
    });
    svg.addEventListener('mouseleave', tip.hide);
    return done(fig);
  }

  /* A scatter of labelled points. spec: {name, title, note, xLabel, yLabel, yMax,
   * points: [{label, short, color, x, y}]} (points without x or y are listed, not drawn). */
  function scatter(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    var pts = spec.points.filter(function (p) { return p.x != null && p.y != null; });
    var missing = spec.points.filter(function (p) { return p.x == null || p.y == null; });
    if (!pts.length) return done(fig, 'no run has both values');
    var w = width(el, 480), h = spec.height || 260;
    var xmax = Math.max.apply(null, pts.map(function (p) { return p.x; }));
    var ymax = Math.max.apply(null, pts.map(function (p) { return p.y; }));
    if (spec.yMax != null) ymax = Math.max(ymax, spec.yMax);
    var xt = ticks(0, xmax > 0 ? xmax * 1.05 : 1, 5, true), yt = ticks(0, ymax > 0 ? ymax : 1, 5);
    var x = scale(0, xt[xt.length - 1], M.l, w - M.r - 40);
    var y = scale(0, yt[yt.length - 1], h - M.b, M.t + 6);
    var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
      esc(spec.title) + '">';
    s += axes(w, h, x, y, xt, yt, spec.xLabel, spec.yLabel);
    var at = {};  // points drawn at (nearly) the same place share one label
    pts.forEach(function (p) {
      var px = x(p.x), py = y(p.y), key = Math.round(px / 6) + ',' + Math.round(py / 6);
      s += '<circle class="rc-dot" cx="' + px.toFixed(1) + '" cy="' + py.toFixed(1) +
        '" r="6" fill="' + esc(p.color) + '"><title>' + esc(p.label + ': ' + num(p.x) +
        ' pages, ' + num(p.y)) + '</title></circle>';
      (at[key] = at[key] || {px: px, py: py, names: []}).names.push(p.short);
    });
    Object.keys(at).forEach(function (k) {
      var a = at[k];
      var right = a.px > w * 0.7;  // labels of points near the right edge go to their left
      s += '<text class="rc-dotlabel" x="' + (a.px + (right ? -9 : 9)).toFixed(1) + '" y="' +
        a.py.toFixed(1) + '" dy="0.32em" text-anchor="' + (right ? 'end' : 'start') + '">' +
        esc(a.names.join(' ')) + '</text>';
    });
    s += '</svg>';
    fig.insertAdjacentHTML('beforeend', legend(pts) + s);
    if (missing.length) {
      var p = document.createElement('p');
      p.className = 'rc-note';
      p.textContent = 'not drawn (no value): ' + missing.map(function (q) { return q.label; })
        .join('; ');
      fig.appendChild(p);
    }
    return done(fig);
  }

  /* A table. spec: {name, title, note, columns: [], rows: [[]], highlight: {col: 'max'|'min'}} */
  function table(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    if (!spec.rows.length) return done(fig, 'no rows');
    var best = {};
    Object.keys(spec.highlight || {}).forEach(function (c) {
      var j = spec.columns.indexOf(c);
      if (j < 0) return;
      var vals = spec.rows.map(function (r) { return r[j]; })
        .filter(function (v) { return typeof v === 'number'; });
      if (vals.length > 1) {
        best[j] = (spec.highlight[c] === 'max' ? Math.max : Math.min).apply(null, vals);
        if (Math.max.apply(null, vals) === Math.min.apply(null, vals)) delete best[j];
      }
    });
    var s = '<div class="rc-scroll"><table class="rc-table"><thead><tr>';
    spec.columns.forEach(function (c) { s += '<th>' + esc(c.replace(/_/g, ' ')) + '</th>'; });
    s += '</tr></thead><tbody>';
    spec.rows.forEach(function (r) {
      s += '<tr>';
      r.forEach(function (v, j) {
        var cls = typeof v === 'number' ? 'rc-num' : '';
        if (j in best && v === best[j]) cls += ' rc-best';
        s += '<td class="' + cls + '">' + esc(num(v)) + '</td>';
      });
      s += '</tr>';
    });
    fig.insertAdjacentHTML('beforeend', s + '</tbody></table></div>');
    return done(fig);
  }

  // Pages of a pageblock map, by the letter replay.analysis.explain.pageblock_map gives
  var PAGE_STATES = [['F', 'free', '#f4f4f4'], ['P', 'pcp list', '#b9d7f0'],
    ['M', 'movable', '#66a182'], ['R', 'reclaimable', '#4f86c6'],
    ['U', 'unmovable (pinned)', '#d1495b'], ['H', 'hole / untraced', '#555555']];

  function blockmap(el, spec) {
    // One grid per candidate block: its pageblocks, 32 pages a row, the block outlined.
    var fig = figure(el, spec.name, spec.title, spec.note);
    var cands = spec.candidates || [];
    if (!cands.length) return done(fig, 'no candidate blocks');
    var colors = {};
    PAGE_STATES.forEach(function (p) { colors[p[0]] = p[2]; });
    var cols = 32, px = 6, html = '<div class="rc-legend">' + PAGE_STATES.map(function (p) {
      return '<span class="rc-key"><i style="background:' + p[2] + '"></i>' + esc(p[1]) + '</span>';
    }).join('') + '</div><div class="rc-maps">';
    cands.forEach(function (c, ci) {
      var n = c.map.length, rows = Math.ceil(n / cols), size = 1 << spec.order;
      var svg = '<svg class="rc-svg rc-blockmap" data-candidate="' + ci + '" width="' +
        (cols * px + 2) + '" height="' + (rows * px + 2) + '" role="img" aria-label="pages ' +
        'of the pageblocks around pfn ' + c.pfn + '">';
      for (var i = 0; i < n; i++) {
        svg += '<rect x="' + (1 + (i % cols) * px) + '" y="' + (1 + Math.floor(i / cols) * px) +
          '" width="' + (px - 1) + '" height="' + (px - 1) + '" fill="' +
          (colors[c.map[i]] || '#fff') + '"/>';
      }
      // the candidate block: whole rows when it spans them, else a run within a row
      var r0 = Math.floor(c.map_offset / cols), r1 = Math.floor((c.map_offset + size - 1) / cols);
      var x0 = r0 === r1 ? c.map_offset % cols : 0, x1 = r0 === r1 ? x0 + size : cols;
      svg += '<rect class="rc-block" x="' + (0.5 + x0 * px) + '" y="' + (0.5 + r0 * px) +
        '" width="' + ((x1 - x0) * px) + '" height="' + ((r1 - r0 + 1) * px) +
        '" fill="none" stroke="#000" stroke-width="1.5"/></svg>';
      html += '<div class="rc-map"><div class="rc-note">pfn ' + esc(c.pfn) + ': ' +
        (c.possible ? 'migrate ' + num(c.to_migrate) + ', reclaim ' + num(c.to_reclaim)
          : 'pinned (' + num(c.pinned_pages) + ' pages, first at pfn ' +
            esc(c.blocked_by_pfn) + ')') + '</div>' + svg + '</div>';
    });
    fig.insertAdjacentHTML('beforeend', html + '</div>');
    return done(fig);
  }

  function section(container, title, text) {
    var sec = document.createElement('section');
    sec.className = 'rc-section';
    sec.innerHTML = '<h2>' + esc(title) + '</h2>' + (text ? '<p class="rc-text">' + esc(text) +
      '</p>' : '');
    container.appendChild(sec);
    var body = document.createElement('div');
    body.className = 'rc-grid';
    sec.appendChild(body);
    return body;
  }

  function cell(body) {
    var d = document.createElement('div');
    d.className = 'rc-cell';
    body.appendChild(d);
    return d;
  }

  /* The whole report into container (replaces its content). */
  function render(container, data, opts) {
    opts = opts || {};
    container.innerHTML = '';
    container.classList.add('rc-report');
    var runs = data.runs || [];
    runs.forEach(function (r, i) {
      r.color = r.color || PALETTE[i % PALETTE.length];
      r.dash = r.dash == null ? DASHES[i % DASHES.length] : r.dash;
    });
    var head = document.createElement('header');
    head.className = 'rc-head';
    head.innerHTML = '<h1>' + esc(data.title || 'replay report') + '</h1><p class="rc-text">' +
      runs.length + ' run' + (runs.length === 1 ? '' : 's') + '; indices for order ' +
      esc(data.order) + '; at most ' + esc(data.points) + ' points per run and series' +
      (data.generated ? '; generated ' + esc(data.generated) : '') +
      (data.source ? ' from ' + esc(data.source) : '') +
      (data.replay_version ? ' by replay ' + esc(data.replay_version) : '') + '</p>';
    container.appendChild(head);

    var sum = data.summary || {columns: [], rows: []};
    table(section(container, 'Summary',
      'One row per run. success pct: allocations served (ok or degraded, a degraded success ' +
      'being a virtual compound of order-0 pages) per allocation, overall and per order (oK); ' +
      'high order: orders above ' + data.costly_order + '. Costs in pages. Final state: ' +
      'free_high_pct is the share of free pages in blocks of order ' + data.order + ' or more; ' +
      'unusable and fragmentation index in thousandths, extfrag_for_order and the ' +
      'fragmentation score in percent. Best value of a column in bold.'), {
      name: 'summary', title: 'Runs side by side', columns: sum.columns, rows: sum.rows,
      highlight: {success_pct: 'max', high_order_success_pct: 'max', failures: 'min',
        cost_pages: 'min', unusable_index: 'min', fragmentation_score: 'min',
        free_high_pct: 'max', mixed_pageblocks: 'min'}
    });

    var lines = [
      ['free_pages', 'series', 'Free pages', 'pages in the buddy free lists', 'pages', 0],
      ['largest_free_order', 'series', 'Largest free order', 'order of the largest free block ' +
        '(-1: none)', 'order', -1, 10],
      ['unusable_index', 'series', 'Unusable free space index, order ' + data.order,
        'thousandths of free pages in blocks too small for order ' + data.order, '/1000', 0,
        1000],
      ['fragmentation_score', 'series', 'Fragmentation score',
        'proactive compaction\'s node score (extfrag_for_order(9) of the zone), percent', '%',
        0, 100],
      ['failures', 'counters', 'Failed allocations', 'cumulative', 'allocations', 0],
      ['cost', 'counters', 'Defragmentation cost', 'cumulative pages migrated + scanned + ' +
        'evicted + exchanged', 'pages', 0]
    ];
    var ts = section(container, 'Over time', 'The last step of each of at most ' + data.points +
      ' buckets of events per run (downsampled in SQL). Move the pointer over a chart for values.');
    var fails = data.failures || {columns: [], rows: [], run_ids: []};
    var seqCol = fails.columns.indexOf('seq');
    var marks = (fails.run_ids || []).map(function (id, i) {
      var r = runs.filter(function (q) { return q.run_id === id; })[0] || {};
      return {x: fails.rows[i][seqCol], run_id: id, seq: fails.rows[i][seqCol],
        color: r.color, title: (r.label || 'run ' + id) + ': failed allocation, seq ' +
        fails.rows[i][seqCol] + (opts.onFailure ? ' (click: explain it)' : '')};
    });
    lines.forEach(function (l) {
      line(cell(ts), {
        name: l[0], title: l[2], note: l[3], xLabel: 'event (seq)', yLabel: l[4], integer: true,
        yMin: l[5], yMax: l[6],
        marks: l[0] === 'failures' ? marks : null,
        onMark: opts.onFailure ? function (m) { opts.onFailure(m.run_id, m.seq); } : null,
        series: runs.map(function (r) {
          var src = r[l[1]] || {};
          return {label: r.label, color: r.color, dash: r.dash, x: src.seq || [],
            y: src[l[0]] || []};
        })
      });
    });

    var hm = section(container, 'Buddyinfo over time',
      'Free pages per order (nr_free << order) over the run, one map per run.');
    runs.forEach(function (r) {
      heatmap(cell(hm), {name: 'buddyinfo-' + r.run_id, title: r.label,
        seq: (r.series || {}).seq || [], nr_free: (r.series || {}).nr_free || []});
    });

    var pb = section(container, 'Pageblock ownership',
      'Pageblocks (512 pages) by migratetype over the run\'s snapshots; neighbouring ' +
      'pageblocks are aggregated into rows in large zones (the commonest type shown).');
    runs.forEach(function (r) {
      ownership(cell(pb), {name: 'pageblocks-' + r.run_id, title: r.label, map: r.pageblocks});
    });

    var cb = section(container, 'Cost against benefit',
      'Per run: pages the defragmentation mechanisms touched against what they bought.');
    var pts = function (key) {
      return runs.map(function (r) {
        var v = r.cost_benefit || {};
        return {label: r.label, short: '#' + r.run_id, color: r.color, x: v.cost_pages,
          y: v[key]};
      });
    };
    scatter(cell(cb), {name: 'cost-success', title: 'High-order success',
      note: 'orders above ' + data.costly_order, xLabel: 'cost (pages migrated + scanned + ' +
      'evicted + exchanged)', yLabel: 'success %', yMax: 100, points: pts('high_order_success_pct')});
    scatter(cell(cb), {name: 'cost-free', title: 'Free memory in large blocks at the end',
      note: 'order ' + data.order + ' or more', xLabel: 'cost (pages migrated + scanned + ' +
      'evicted + exchanged)', yLabel: '% of free pages', yMax: 100, points: pts('free_high_pct')});

    var fl = data.failures || {columns: [], rows: []};
    if (fl.rows.length) {
      table(section(container, 'Failures',
        'The first failed allocations of each run (at most five), with what the stored ' +
        'steps say of each: free blocks of at least its order just before it, free pages ' +
        'above the min watermark, and whether the model fell back or compacted for it. ' +
        '`replay explain RUN --seq SEQ` explains one from the state just before it and ' +
        'forks other models there.'), {
        name: 'failed-allocations', title: 'Failed allocations', columns: fl.columns,
        rows: fl.rows
      });
      if (opts.onFailure) {  // a row opens its explanation
        var trs = container.querySelectorAll('[data-chart="failed-allocations"] tbody tr');
        Array.prototype.forEach.call(trs, function (tr, i) {
          tr.className = 'rc-clickable';
          tr.title = 'explain this allocation';
          tr.addEventListener('click', function () {
            opts.onFailure(fl.run_ids[i], fl.rows[i][seqCol]);
          });
        });
      }
      var maps = fl.maps || [];
      if (maps.length) {
        var mp = section(container, 'Where a block could have come from',
          'For the first failed allocation of each run: the aligned blocks of its order ' +
          'nearest to free just before it, each in its pageblocks (32 pages a row, the ' +
          'block outlined): free pages, pcp pages, and the allocated pages compaction could ' +
          'migrate, only reclaim could free, or nothing can move.');
        maps.forEach(function (m) {
          blockmap(cell(mp), {name: 'candidates-' + m.run_id, title: m.label + ', seq ' +
            m.seq + ' (order ' + m.order + ')', order: m.order, candidates: m.candidates});
        });
      }
    }
    container.setAttribute('data-drawn', '1');
    return container;
  }

  global.ReplayCharts = {
    render: render, line: line, heatmap: heatmap, ownership: ownership, scatter: scatter,
    table: table, blockmap: blockmap, MIGRATETYPES: MIGRATETYPES, PALETTE: PALETTE
  };
})(typeof window !== 'undefined' ? window : this);
