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

  var uid = 0;  // ids of clip paths, unique in the document (a page may draw twice)
  var MARKERS = ['circle', 'square', 'triangle', 'diamond', 'down', 'bar'];

  // A marker shape (not a path: a chart's <path> elements are its lines).
  function marker(kind, px, py, color, cls) {
    var a = ' class="' + (cls || 'rc-marker') + '" fill="' + esc(color) + '"';
    var poly = function (pts) {
      return '<polygon' + a + ' points="' + pts.map(function (q) {
        return (px + q[0]).toFixed(1) + ',' + (py + q[1]).toFixed(1);
      }).join(' ') + '"/>';
    };
    if (kind === 'square') {
      return '<rect' + a + ' x="' + (px - 3).toFixed(1) + '" y="' + (py - 3).toFixed(1) +
        '" width="6" height="6"/>';
    }
    if (kind === 'triangle') return poly([[0, -4], [3.8, 2.8], [-3.8, 2.8]]);
    if (kind === 'diamond') return poly([[0, -4.2], [4.2, 0], [0, 4.2], [-4.2, 0]]);
    if (kind === 'down') return poly([[0, 4], [3.8, -2.8], [-3.8, -2.8]]);
    if (kind === 'bar') {
      return '<rect' + a + ' x="' + (px - 4.5).toFixed(1) + '" y="' + (py - 1.8).toFixed(1) +
        '" width="9" height="3.6"/>';
    }
    return '<circle' + a + ' cx="' + px.toFixed(1) + '" cy="' + py.toFixed(1) + '" r="3.2"/>';
  }

  // The legend of line charts: each run's dash and marker, and the runs it coincides with.
  function lineLegend(series) {
    var s = '<div class="rc-legend">';
    series.forEach(function (sr) {
      s += '<span class="rc-key" data-run="' + esc(sr.run_id) + '"><svg class="rc-keyline" ' +
        'width="30" height="10" aria-hidden="true"><line x1="1" x2="29" y1="5" y2="5" stroke="' +
        esc(sr.color) + '" stroke-width="2"' + (sr.dash ? ' stroke-dasharray="' + sr.dash + '"'
        : '') + '/>' + marker(sr.marker, 15, 5, sr.color) + '</svg>' + esc(sr.label) +
        (sr.same && sr.same.length ? ' <span class="rc-same">(same line as ' +
          esc(sr.same.join(', ')) + ')</span>' : '') + '</span>';
    });
    return s + '</div>';
  }

  /* Series drawn at the same place: each series' ``same`` lists the short names of the
   * others with identical x and y; returns the groups (lists of short names). */
  function coincide(series) {
    var by = {}, groups = [];
    series.forEach(function (sr) {
      var key = JSON.stringify([sr.x, sr.y]);
      (by[key] = by[key] || []).push(sr);
    });
    Object.keys(by).forEach(function (k) {
      var g = by[k];
      g.forEach(function (sr) {
        sr.same = g.filter(function (o) { return o !== sr; }).map(function (o) { return o.short; });
      });
      if (g.length > 1) groups.push(g.map(function (o) { return o.short; }));
    });
    return groups;
  }

  function log1p10(v) { return Math.log(1 + Math.max(0, v)) / Math.LN10; }

  // Ticks of a log(1 + y) axis over [lo, hi] (in log units): 0, 1, 10, ... (2 and 5 between
  // them when the range is short), as log units.
  function logTicks(lo, hi) {
    var vmax = Math.pow(10, hi) - 1, out = [], mults = hi - lo < 2.5 ? [1, 2, 5] : [1];
    if (lo <= 0) out.push(0);
    for (var d = 1; d <= vmax * 10 && d < 1e18; d *= 10) {
      mults.forEach(function (m) {
        var v = m * d, f = log1p10(v);
        if (f >= lo - 1e-9 && f <= hi + 1e-9) out.push(f);
      });
    }
    if (out.length < 2) return ticks(lo, hi, 4);
    return out;
  }

  /* A line chart. spec: {name, title, note, xLabel, yLabel, integer, yMin, yMax, logOk,
   * view: {x: 'seq'|'t', lo, hi, log} (shared by a report's charts), onZoom(lo, hi),
   * series: [{label, short, run_id, color, dash, marker, x: [seq], t: [seconds], y: []}],
   * marks: [{x: seq, t, lane, color, title}] (a rug per lane at the bottom), onMark(m)}.
   * Null y values break the line. The chart redraws itself with fig.redraw(). Drag across
   * it to zoom (spec.onZoom, else itself), double-click to zoom out. */
  function line(el, spec) {
    var fig = figure(el, spec.name, spec.title, spec.note);
    var all = spec.series.filter(function (s) {
      return s.y.some(function (v) { return v != null; });
    });
    if (!all.length) return done(fig, 'no data');
    all.forEach(function (sr, i) {
      sr.short = sr.short || sr.label;
      sr.marker = sr.marker || MARKERS[i % MARKERS.length];
    });
    var groups = coincide(all);
    if (groups.length) {
      fig.setAttribute('data-coincide', groups.map(function (g) { return g.join(' '); })
        .join('; '));
    }
    var view = spec.view || {x: 'seq', lo: null, hi: null, log: false};
    var body = document.createElement('div');
    fig.appendChild(body);
    var tip = tooltip(fig), clip = 'rc-clip-' + (++uid);
    var zoom = spec.onZoom || function (lo, hi) { view.lo = lo; view.hi = hi; draw(); };

    function draw() {
      var useT = view.x === 't', log = !!(view.log && spec.logOk);
      var xsOf = function (sr) { return useT ? (sr.t || []) : sr.x; };
      var fy = log ? log1p10 : function (v) { return v; };
      var w = width(el, 600), h = spec.height || 250;
      var xmin = Infinity, xmax = -Infinity;
      all.forEach(function (sr) {
        xsOf(sr).forEach(function (v, i) {
          if (v == null || sr.y[i] == null) return;
          xmin = Math.min(xmin, v); xmax = Math.max(xmax, v);
        });
      });
      fig.setAttribute('data-x', useT ? 't' : 'seq');
      fig.setAttribute('data-log', log ? '1' : '0');
      if (!isFinite(xmin)) {
        body.innerHTML = '<p class="rc-empty">no ' + (useT ? 'timestamps' : 'data') + '</p>';
        return;
      }
      var lo = view.lo != null ? Math.max(xmin, view.lo) : xmin;
      var hi = view.hi != null ? Math.min(xmax, view.hi) : xmax;
      if (!(hi > lo)) { lo = Math.min(lo, hi); hi = lo + (useT ? 1e-6 : 1); }
      fig.setAttribute('data-zoomed', view.lo != null || view.hi != null ? '1' : '0');
      var ymin = Infinity, ymax = -Infinity;
      all.forEach(function (sr) {
        xsOf(sr).forEach(function (v, i) {
          if (v == null || sr.y[i] == null || v < lo || v > hi) return;
          var f = fy(sr.y[i]);
          ymin = Math.min(ymin, f); ymax = Math.max(ymax, f);
        });
      });
      if (!isFinite(ymin)) { ymin = 0; ymax = 1; }
      if (spec.yMin != null) ymin = Math.min(ymin, fy(spec.yMin));
      if (spec.yMax != null && view.lo == null && view.hi == null) {
        ymax = Math.max(ymax, fy(spec.yMax));
      }
      if (ymax === ymin) { ymax = ymin + 1; }
      var yt = log ? logTicks(ymin, ymax) : ticks(ymin, ymax, 5, spec.integer);
      ymin = Math.min(ymin, yt[0]); ymax = Math.max(ymax, yt[yt.length - 1]);
      var x = scale(lo, hi, M.l, w - M.r), y = scale(ymin, ymax, h - M.b, M.t);
      var yfmt = log ? function (t) { return short(Math.round(Math.pow(10, t) - 1)); } : short;
      var xlabel = useT ? 'trace time (s)' : spec.xLabel;
      var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
        esc(spec.title) + '"><defs><clipPath id="' + clip + '"><rect x="' + M.l + '" y="' +
        (M.t - 4) + '" width="' + (w - M.r - M.l) + '" height="' + (h - M.b - M.t + 8) +
        '"/></clipPath></defs>';
      s += axes(w, h, x, y, ticks(lo, hi, 6, !useT), yt, xlabel,
        spec.yLabel + (log ? ' (log scale)' : ''), null, yfmt);
      s += '<g clip-path="url(#' + clip + ')">';
      all.forEach(function (sr, k) {
        var xs = xsOf(sr), d = '', pen = false, vis = [];
        xs.forEach(function (v, i) {
          var yv = sr.y[i];
          if (yv == null || v == null) { pen = false; return; }
          d += (pen ? 'L' : 'M') + x(v).toFixed(1) + ' ' + y(fy(yv)).toFixed(1);
          pen = true;
          if (v >= lo && v <= hi) vis.push(i);
        });
        // A lone point still shows: a zero-length segment with round caps.
        if (sr.y.filter(function (v) { return v != null; }).length === 1) d += 'h0.01';
        s += '<path class="rc-line" d="' + d + '" stroke="' + esc(sr.color) + '"' +
          (sr.dash ? ' stroke-dasharray="' + sr.dash + '"' : '') + '/>';
        // markers on about ten of the visible points, each series at its own phase, so
        // that series drawn at the same place stay told apart
        var step = Math.max(1, Math.ceil(vis.length / 10)), phase = Math.floor(step * k / all.length);
        for (var j = phase; j < vis.length; j += step) {
          var i = vis[j];
          s += marker(sr.marker, x(xs[i]), y(fy(sr.y[i])), sr.color);
        }
      });
      s += '</g>';
      // marks: a rug per lane (run) under the plot, failed allocations; clickable when
      // spec.onMark is given
      var shown = [];
      (spec.marks || []).forEach(function (m, i) {
        var mx = useT ? m.t : m.x;
        if (mx == null || mx < lo || mx > hi) return;
        var y2 = h - M.b - 5 * (m.lane || 0), px = x(mx).toFixed(1);
        shown.push(m);
        s += '<line class="rc-mark" data-mark="' + i + '" data-run="' + esc(m.run_id) +
          '" x1="' + px + '" x2="' + px + '" y1="' + (y2 - 5) + '" y2="' + y2 + '" stroke="' +
          esc(m.color || '#000') + '"><title>' + esc(m.title || '') + '</title></line>';
      });
      s += '<rect class="rc-brush" x="0" y="' + M.t + '" width="0" height="' + (h - M.b - M.t) +
        '" visibility="hidden"/>';
      s += '<line class="rc-cursor" x1="0" x2="0" y1="' + M.t + '" y2="' + (h - M.b) +
        '" visibility="hidden"/></svg>';
      body.innerHTML = lineLegend(all) + s;
      var svg = body.querySelector('svg.rc-svg'), cursor = svg.querySelector('.rc-cursor');
      var brush = svg.querySelector('.rc-brush'), drag = null, dragged = false;
      var valueAt = function (px) { return lo + (px - M.l) * (hi - lo) / (w - M.r - M.l); };
      var clamp = function (px) { return Math.max(M.l, Math.min(w - M.r, px)); };
      svg.style.cursor = 'crosshair';
      if (spec.onMark && shown.length) {
        fig.setAttribute('data-clickable', '1');
        svg.addEventListener('click', function (ev) {  // the mark nearest the pointer
          if (dragged) { dragged = false; return; }
          var xv = valueAt(svgPoint(svg, w, h, ev)[0]), best = null, bd = Infinity;
          shown.forEach(function (m) {
            var d = Math.abs((useT ? m.t : m.x) - xv);
            if (d < bd) { best = m; bd = d; }
          });
          if (best) spec.onMark(best);
        });
      }
      svg.addEventListener('mousedown', function (ev) {
        if (ev.button !== 0) return;
        var p = svgPoint(svg, w, h, ev);
        if (p[0] < M.l || p[0] > w - M.r) return;
        drag = clamp(p[0]);
        ev.preventDefault();
      });
      svg.addEventListener('mouseup', function (ev) {
        if (drag == null) return;
        var end = clamp(svgPoint(svg, w, h, ev)[0]), start = drag;
        drag = null;
        brush.setAttribute('visibility', 'hidden');
        if (Math.abs(end - start) < 5) return;  // a click, not a drag
        dragged = true;
        setTimeout(function () { dragged = false; }, 0);
        zoom(valueAt(Math.min(start, end)), valueAt(Math.max(start, end)));
      });
      svg.addEventListener('dblclick', function () { zoom(null, null); });
      svg.addEventListener('mousemove', function (ev) {
        var p = svgPoint(svg, w, h, ev);
        if (drag != null) {
          var a = clamp(p[0]);
          brush.setAttribute('x', Math.min(a, drag)); brush.setAttribute('width', Math.abs(a - drag));
          brush.setAttribute('visibility', 'visible');
        }
        if (p[0] < M.l || p[0] > w - M.r) {
          tip.hide(); cursor.setAttribute('visibility', 'hidden'); return;
        }
        var xv = valueAt(p[0]);
        var html = '<b>' + esc(xlabel) + ' ' + (useT ? num(xv, 4) : num(Math.round(xv))) + '</b>';
        all.forEach(function (sr) {
          var xs = xsOf(sr), i = bisect(xs, xv);
          if (i < 0) return;
          html += '<br><i style="background:' + esc(sr.color) + '"></i>' + esc(sr.label) +
            ': ' + num(sr.y[i]) + ' <span class="rc-note">(seq ' + num(sr.x[i]) +
            (sr.t && sr.t[i] != null ? ', ' + num(sr.t[i], 4) + ' s' : '') + ')</span>';
        });
        cursor.setAttribute('x1', p[0]); cursor.setAttribute('x2', p[0]);
        cursor.setAttribute('visibility', 'visible');
        tip.show(html, ev);
      });
      svg.addEventListener('mouseleave', function () {
        tip.hide(); cursor.setAttribute('visibility', 'hidden');
        brush.setAttribute('visibility', 'hidden'); drag = null;
      });
    }
    fig.redraw = draw;
    draw();
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

  /* Round ticks of a grid's columns: vals[c] is column c's seq or seconds (null: none);
   * a tick sits between the centres of the columns around its value. */
  function colTicks(vals, x0, cw, n, integer) {
    var known = [];
    vals.forEach(function (v, c) { if (v != null) known.push([c, v]); });
    if (!known.length) return [];
    var lo = known[0][1], hi = known[known.length - 1][1];
    if (known.length === 1 || !(hi > lo)) {
      return [{px: x0 + (known[0][0] + 0.5) * cw, label: short(lo), value: lo}];
    }
    var out = [], j = 0;
    ticks(lo, hi, n, integer).forEach(function (t) {
      while (j < known.length - 2 && known[j + 1][1] < t) j += 1;
      var a = known[j], b = known[j + 1];
      var f = b[1] > a[1] ? (t - a[1]) / (b[1] - a[1]) : 0;
      f = Math.max(0, Math.min(1, f));
      out.push({px: x0 + (a[0] + 0.5 + f * (b[0] - a[0])) * cw, label: short(t), value: t});
    });
    return out;
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
    var view = spec.view || {x: 'seq'};
    var body = document.createElement('div');
    fig.appendChild(body);
    var tip = tooltip(fig);
    function draw() {
      var useT = view.x === 't' && (spec.t || []).some(function (v) { return v != null; });
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
      s += gridAxes(w, h, colTicks(useT ? spec.t : spec.seq, M.l, cw, 8, !useT), rows,
        useT ? 'trace time (s)' : 'event (seq)', 'order');
      s += '</svg>';
      var keys = '<div class="rc-legend"><span class="rc-key">free pages per order, log ' +
        'scale: </span><span class="rc-ramp" style="background:linear-gradient(90deg,' +
        [0, 0.25, 0.5, 0.75, 1].map(heatColor).join(',') + ')"></span><span class="rc-key">' +
        '0 .. ' + num(max) + ' pages</span></div>';
      body.innerHTML = keys + s;
      fig.setAttribute('data-x', useT ? 't' : 'seq');
      var svg = body.querySelector('svg.rc-svg');
      svg.addEventListener('mousemove', function (ev) {
        var p = svgPoint(svg, w, h, ev);
        var c = Math.floor((p[0] - M.l) / cw), r = norders - 1 - Math.floor((p[1] - M.t) / ch);
        if (c < 0 || c >= cols || r < 0 || r >= norders) { tip.hide(); return; }
        var n = spec.nr_free[c][r], t = (spec.t || [])[c];
        tip.show('<b>seq ' + num(spec.seq[c]) + (t != null ? ' (' + num(t, 4) + ' s)' : '') +
          ', order ' + r + '</b><br>' + num(n) + ' free blocks = ' + num(pages[c][r]) +
          ' pages', ev);
      });
      svg.addEventListener('mouseleave', tip.hide);
    }
    fig.redraw = draw;
    draw();
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
    var view = spec.view || {x: 'seq'};
    var body = document.createElement('div');
    fig.appendChild(body);
    var tip = tooltip(fig);
    // a pageblock whose type the run did not record (an observed run without a kpageflags
    // snapshot): grey, lighter the more of its pages are free
    var unknownColor = function (free) { return mixColor('#d0d0d0', 0.75 * (1 - free / 100)); };
    function draw() {
      var useT = view.x === 't' && (m.t || []).some(function (v) { return v != null; });
      var w = width(el, 600);
      var h = spec.height || Math.max(200, Math.min(420, rows * 8 + M.t + M.b));
      var cw = (w - M.l - M.r) / cols, ch = (h - M.t - M.b) / rows;
      var present = {}, unknown = false;
      var s = '<svg class="rc-svg" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' +
        esc(spec.title) + '">';
      s += grid(cols, rows, M.l, M.t, cw, ch, function (c, r) {
        var i = c * rows + r, mt = m.mt[i];
        if (mt == null || mt < 0) {
          if (!(m.blocks && m.blocks[i] > 0)) return null;
          unknown = true;
          return unknownColor(Math.round(m.free[i] / 20) * 20);
        }
        present[mt] = true;
        var base = (MIGRATETYPES[mt] || ['?', '#444444'])[1];
        return mixColor(base, 0.7 * Math.round(m.mixed[i] / 20) / 5);
      });
      var labels = [], step = Math.max(1, Math.ceil(rows / 8));
      for (var r = 0; r < rows; r += step) {
        labels.push({py: M.t + (rows - 0.5 - r) * ch,
          label: short(m.first_pageblock + r * m.pageblocks_per_row)});
      }
      s += gridAxes(w, h, colTicks(useT ? m.t : m.seq, M.l, cw, 8, !useT), labels,
        useT ? 'snapshot at trace time (s)' : 'snapshot after event (seq)',
        m.pageblocks_per_row > 1 ? 'pageblock (' + m.pageblocks_per_row + ' per row)'
          : 'pageblock');
      s += '</svg>';
      var items = Object.keys(present).sort().map(function (k) {
        var t = MIGRATETYPES[+k] || ['type ' + k, '#444444'];
        return {label: t[0], color: t[1]};
      });
      var keys = legend(items).replace('</div>', (items.length ? '<span class="rc-key">' +
        'darker: more of the pageblocks mixed (holding pages of another type)</span><span ' +
        'class="rc-ramp" style="background:linear-gradient(90deg,' + mixColor('#66a182', 0) +
        ',' + mixColor('#66a182', 0.7) + ')"></span>' : '') + (unknown ? '<span class="rc-key" ' +
        'data-unknown="1">type not recorded (no kpageflags snapshot): lighter = more pages ' +
        'free</span><span class="rc-ramp" style="background:linear-gradient(90deg,' +
        unknownColor(0) + ',' + unknownColor(100) + ')"></span>' : '') + '</div>');
      body.innerHTML = keys + s;
      fig.setAttribute('data-x', useT ? 't' : 'seq');
      var svg = body.querySelector('svg.rc-svg');
      svg.addEventListener('mousemove', function (ev) {
        var p = svgPoint(svg, w, h, ev);
        var c = Math.floor((p[0] - M.l) / cw), r = rows - 1 - Math.floor((p[1] - M.t) / ch);
        if (c < 0 || c >= cols || r < 0 || r >= rows) { tip.hide(); return; }
        var i = c * rows + r, pb = m.first_pageblock + r * m.pageblocks_per_row;
        var mt = MIGRATETYPES[m.mt[i]], t = (m.t || [])[c];
        tip.show('<b>seq ' + num(m.seq[c]) + (t != null ? ' (' + num(t, 4) + ' s)' : '') +
          ', pageblock ' + num(pb) + (m.pageblocks_per_row > 1 ? '..' +
          num(pb + m.pageblocks_per_row - 1) : '') + '</b><br>' + (mt ? mt[0] + ', ' +
          m.mixed[i] + '% mixed, ' : 'type not recorded, ') + m.free[i] + '% free', ev);
      });
      svg.addEventListener('mouseleave', tip.hide);
    }
    fig.redraw = draw;
    draw();
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
        ' pages, ' + num(p.y) + (p.extra ? '; ' + p.extra : '')) + '</title></circle>';
      (at[key] = at[key] || {px: px, py: py, names: []}).names.push(p.short);
    });
    // Labels placed one by one where they overlap no label or dot placed before: right of
    // the dot, left, above, below, then further down (the font is about 7 px a character).
    var boxes = [];
    Object.keys(at).forEach(function (k) {
      var a = at[k];
      boxes.push({x0: a.px - 6, x1: a.px + 6, y0: a.py - 6, y1: a.py + 6});
    });
    var hits = function (b) {
      return boxes.some(function (o) {
        return b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1;
      });
    };
    Object.keys(at).sort(function (k1, k2) { return at[k1].py - at[k2].py; })
      .forEach(function (k) {
        var a = at[k], text = a.names.join(' '), tw = 7 * text.length + 2, th = 14;
        var tries = [[9, 0, 'start'], [-9, 0, 'end'], [-tw / 2, -14, 'start'],
          [-tw / 2, 14, 'start']];
        for (var d = 1; d <= 8; d++) tries.push([9, 14 * d, 'start'], [-9, 14 * d, 'end']);
        var pick = null;
        tries.some(function (t) {
          var x0 = t[2] === 'end' ? a.px + t[0] - tw : a.px + t[0];
          var b = {x0: x0, x1: x0 + tw, y0: a.py + t[1] - th / 2, y1: a.py + t[1] + th / 2};
          if (b.x0 < 0 || b.x1 > w || hits(b)) return false;
          pick = [t, b];
          return true;
        });
        if (!pick) {
          var x0 = a.px + 9;
          pick = [[9, 0, 'start'], {x0: x0, x1: x0 + tw, y0: a.py - 7, y1: a.py + 7}];
        }
        boxes.push(pick[1]);
        var t = pick[0];
        s += '<text class="rc-dotlabel" x="' + (a.px + t[0]).toFixed(1) + '" y="' +
          (a.py + t[1]).toFixed(1) + '" dy="0.32em" text-anchor="' + t[2] + '">' + esc(text) +
          '</text>';
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
    fig.appendChild(downloads(spec.columns, spec.rows, spec.name));
    return done(fig);
  }

  function csvField(v) {
    if (v == null) return '';
    var t = typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
  }

  /* A table as CSV (a header line, then a line per row; null is empty) or JSON (an array of
   * objects by column name). */
  function tableText(columns, rows, format) {
    if (format === 'json') {
      return JSON.stringify(rows.map(function (r) {
        var o = {};
        columns.forEach(function (c, j) { o[c] = r[j] === undefined ? null : r[j]; });
        return o;
      }), null, 1);
    }
    return [columns].concat(rows).map(function (r) {
      return r.map(csvField).join(',');
    }).join('\r\n') + '\r\n';
  }

  /* CSV and JSON download links of a table's rows (data: URLs made when clicked, so that
   * they always hold the rows shown). rows may be a function returning them. */
  function downloads(columns, rows, name) {
    var div = document.createElement('div');
    div.className = 'rc-downloads';
    div.appendChild(document.createTextNode('download: '));
    [['csv', 'text/csv'], ['json', 'application/json']].forEach(function (f, i) {
      var a = document.createElement('a');
      a.textContent = f[0].toUpperCase();
      a.setAttribute('data-format', f[0]);
      a.download = (name || 'table') + '.' + f[0];
      a.href = '#';
      a.addEventListener('click', function () {
        var cols = typeof columns === 'function' ? columns() : columns;
        var data = typeof rows === 'function' ? rows() : rows;
        a.href = 'data:' + f[1] + ';charset=utf-8,' +
          encodeURIComponent(tableText(cols, data, f[0]));
      });
      if (i) div.appendChild(document.createTextNode(' · '));
      div.appendChild(a);
    });
    return div;
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
      r.marker = r.marker || MARKERS[i % MARKERS.length];
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

    var sumOf = function (keys) {  // per bucket, the sum of counters (null: none known)
      return function (c) {
        return (c.seq || []).map(function (_, i) {
          var known = keys.map(function (k) { return (c[k] || [])[i]; })
            .filter(function (v) { return v != null; });
          return known.length ? known.reduce(function (x, y) { return x + y; }, 0) : null;
        });
      };
    };
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
      ['moved', 'counters', 'Pages moved', 'cumulative pages migrated + evicted + exchanged ' +
        '(contents moved or dropped)', 'pages', 0, null, sumOf(['migrated', 'evicted',
          'exchanged'])],
      ['scanned', 'counters', 'Pages scanned', 'cumulative pages compaction\'s scanners ' +
        'stepped over', 'pages', 0]
    ];
    // one view for every chart over time: the x axis (seq or seconds), the zoomed range and
    // the log scale, set by the controls or a drag across a chart
    var view = {x: 'seq', lo: null, hi: null, log: false};
    var redraw = [];
    var hasT = runs.some(function (r) {
      return ((r.series || {}).t || []).some(function (v) { return v != null; });
    });
    var ts = section(container, 'Over time', 'The last step of each of at most ' + data.points +
      ' buckets of events per run (downsampled in SQL). Move the pointer over a chart for ' +
      'values; drag across one to zoom every chart to that range, double-click to zoom out. ' +
      'Ticks under a plot: failed allocations, a row per run. Lines of runs that coincide ' +
      'are named in the legend; markers tell them apart.');
    var ctl = document.createElement('div');
    ctl.className = 'rc-controls';
    ctl.innerHTML = '<label>x axis <select data-control="x"><option value="seq">event (seq)' +
      '</option><option value="t"' + (hasT ? '' : ' disabled') + '>trace time (s)</option>' +
      '</select></label> <label><input type="checkbox" data-control="log"> log scale</label>' +
      ' <label>from <input data-control="lo" size="10" inputmode="decimal"></label> <label>' +
      'to <input data-control="hi" size="10" inputmode="decimal"></label> <button ' +
      'type="button" data-control="reset">zoom out</button>';
    ts.parentNode.insertBefore(ctl, ts);
    var control = function (k) { return ctl.querySelector('[data-control="' + k + '"]'); };
    var update = function () {
      control('x').value = view.x;
      control('log').checked = view.log;
      var fmt = function (v) {
        return v == null ? '' : String(view.x === 't' ? +v.toFixed(6) : Math.round(v));
      };
      control('lo').value = fmt(view.lo);
      control('hi').value = fmt(view.hi);
      redraw.forEach(function (f) { f(); });
      container.setAttribute('data-view', view.x + (view.log ? ' log' : '') +
        (view.lo != null || view.hi != null ? ' zoomed' : ''));
    };
    var zoom = function (lo, hi) { view.lo = lo; view.hi = hi; update(); };
    control('x').addEventListener('change', function () {
      view.x = control('x').value; view.lo = view.hi = null; update();
    });
    control('log').addEventListener('change', function () {
      view.log = control('log').checked; update();
    });
    var typed = function () {
      var v = function (k) {
        var t = control(k).value.replace(/[,_\s]/g, '');
        return t === '' || isNaN(+t) ? null : +t;
      };
      zoom(v('lo'), v('hi'));
    };
    ['lo', 'hi'].forEach(function (k) {
      control(k).addEventListener('change', typed);
      control(k).addEventListener('keydown', function (ev) { if (ev.key === 'Enter') typed(); });
    });
    control('reset').addEventListener('click', function () { zoom(null, null); });

    // the failure rug: every run's failed allocations (bucketed in SQL), a lane per run
    var marks = [], lane = 0;
    runs.forEach(function (r) {
      var rug = r.failure_rug || {seq: [], t: [], n: []};
      if (!rug.seq.length) return;
      rug.seq.forEach(function (q, i) {
        marks.push({x: q, t: rug.t[i], lane: lane, run_id: r.run_id, seq: q, color: r.color,
          title: (r.label || 'run ' + r.run_id) + ': ' + (rug.n[i] > 1 ? rug.n[i] +
            ' failed allocations from seq ' : 'failed allocation, seq ') + q +
            (opts.onFailure ? ' (click: explain it)' : '')});
      });
      lane += 1;
    });
    lines.forEach(function (l) {
      var fig = line(cell(ts), {
        name: l[0], title: l[2], note: l[3], xLabel: 'event (seq)', yLabel: l[4], integer: true,
        yMin: l[5], yMax: l[6], logOk: l[5] === 0, view: view, onZoom: zoom, marks: marks,
        onMark: opts.onFailure ? function (m) { opts.onFailure(m.run_id, m.seq); } : null,
        series: runs.map(function (r) {
          var src = r[l[1]] || {};
          return {label: r.label, short: '#' + r.run_id, run_id: r.run_id, color: r.color,
            dash: r.dash, marker: r.marker, x: src.seq || [], t: src.t || [],
            y: (l[7] ? l[7](src) : src[l[0]]) || []};
        })
      });
      if (fig.redraw) redraw.push(fig.redraw);
    });

    var hm = section(container, 'Buddyinfo over time',
      'Free pages per order (nr_free << order) over the run, one map per run.');
    runs.forEach(function (r) {
      var fig = heatmap(cell(hm), {name: 'buddyinfo-' + r.run_id, title: r.label, view: view,
        seq: (r.series || {}).seq || [], t: (r.series || {}).t || [],
        nr_free: (r.series || {}).nr_free || []});
      if (fig.redraw) redraw.push(fig.redraw);
    });

    var pb = section(container, 'Pageblock ownership',
      'Pageblocks (512 pages) by migratetype over the run\'s snapshots; neighbouring ' +
      'pageblocks are aggregated into rows in large zones (the commonest type shown).');
    runs.forEach(function (r) {
      var fig = ownership(cell(pb), {name: 'pageblocks-' + r.run_id, title: r.label,
        map: r.pageblocks, view: view});
      if (fig.redraw) redraw.push(fig.redraw);
    });

    var cb = section(container, 'Cost against benefit',
      'Per run: pages the defragmentation mechanisms moved (migrated, evicted, exchanged) ' +
      'or only scanned, against what they bought.');
    var pts = function (xkey, key) {
      return runs.map(function (r) {
        var v = r.cost_benefit || {};
        var moved = v.moved_pages != null ? v.moved_pages : v.cost_pages;
        return {label: r.label, short: '#' + r.run_id, color: r.color,
          x: xkey === 'scanned' ? v.scanned : moved, y: v[key],
          extra: 'moved ' + num(moved) + ', scanned ' + num(v.scanned) + ' pages'};
      });
    };
    var movedLabel = 'pages moved (migrated + evicted + exchanged)';
    scatter(cell(cb), {name: 'cost-success', title: 'High-order success against pages moved',
      note: 'orders above ' + data.costly_order, xLabel: movedLabel, yLabel: 'success %',
      yMax: 100, points: pts('moved', 'high_order_success_pct')});
    scatter(cell(cb), {name: 'cost-free', title: 'Free memory in large blocks at the end',
      note: 'order ' + data.order + ' or more', xLabel: movedLabel, yLabel: '% of free pages',
      yMax: 100, points: pts('moved', 'free_high_pct')});
    scatter(cell(cb), {name: 'scan-success', title: 'High-order success against pages scanned',
      note: 'orders above ' + data.costly_order, xLabel: 'pages scanned', yLabel: 'success %',
      yMax: 100, points: pts('scanned', 'high_order_success_pct')});

    // zsmalloc's three choices (seed 002), when a run has zsmalloc
    var zs = data.zsmalloc;
    if (zs && zs.rows.length) {
      var zsec = section(container, 'zsmalloc: three choices for zram pages',
        'Seed 002: zram pages migrated whole by compaction (page), compacted by zsmalloc ' +
        '(object: zs_compact moves objects into the fullest zspages), or both (hybrid). ' +
        'zram pages held, order-3 success and the data each choice copied (bytes).');
      table(cell(zsec), {name: 'zsmalloc-compare', title: 'The choices side by side',
        columns: zs.columns, rows: zs.rows,
        highlight: {zram_pages_mean: 'min', order3_success_pct: 'max', order3_unusable_mean: 'min',
          all_bytes_copied: 'min'}});
      var zfig = line(cell(zsec), {name: 'zram-pages', title: 'zram pages held',
        note: 'at each call of zsmalloc\'s shrinker', xLabel: 'event (seq)', yLabel: 'pages',
        integer: true, yMin: 0, view: view, onZoom: zoom,
        series: runs.filter(function (r) { return zs.footprint[r.run_id]; }).map(function (r) {
          var f = zs.footprint[r.run_id];
          return {label: r.label, short: '#' + r.run_id, run_id: r.run_id, color: r.color,
            dash: r.dash, marker: r.marker, x: f.seq, t: f.t, y: f.pages};
        })});
      if (zfig.redraw) redraw.push(zfig.redraw);
    }
    update();

    var fl = data.failures || {columns: [], rows: []};
    var seqCol = fl.columns.indexOf('seq');
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
    table: table, blockmap: blockmap, downloads: downloads, tableText: tableText,
    MIGRATETYPES: MIGRATETYPES, PALETTE: PALETTE
  };
})(typeof window !== 'undefined' ? window : this);
