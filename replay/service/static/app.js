/* replay serve: the page. Vanilla JS over the JSON API (/api/...), no dependencies.
 *
 * Lists traces and runs, compares the ticked runs with the report's charts
 * (window.ReplayCharts from /assets/charts.js, data from /api/report/data),
 * runs SQL or a named query into a results table, and uploads / replays
 * traces as jobs (polled until they finish). With `replay serve --token T`,
 * open the page as /#token=T or type the token into the field it shows.
 */
(function () {
  'use strict';

  var state = {token: null, trace: null, runs: [], selected: new Set(), queries: [],
    polling: null};
  var $ = function (id) { return document.getElementById(id); };

  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  function fmt(v) {
    if (v == null) return '';
    if (typeof v === 'number') {
      return Number.isInteger(v) ? v.toLocaleString('en-US')
        : v.toLocaleString('en-US', {maximumFractionDigits: 3});
    }
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  /* -- the token ------------------------------------------------------------------- */
  function loadToken() {
    var m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
    if (m) {
      state.token = decodeURIComponent(m[1]);
      try { sessionStorage.setItem('replay-token', state.token); } catch (e) { /* none */ }
      history.replaceState(null, '', window.location.pathname + window.location.search);
    } else {
      try { state.token = sessionStorage.getItem('replay-token'); } catch (e) { /* none */ }
    }
  }

  function askToken() {
    $('token-form').hidden = false;
    $('token-input').focus();
  }

  /* -- the API --------------------------------------------------------------------- */
  function api(path, opts) {
    opts = opts || {};
    var headers = opts.headers || {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    opts.headers = headers;
    return fetch(path, opts).then(function (resp) {
      var type = resp.headers.get('content-type') || '';
      var body = type.indexOf('application/json') >= 0 ? resp.json() : resp.text();
      return body.then(function (data) {
        if (resp.ok) return data;
        if (resp.status === 401) askToken();
        var msg = (data && data.error) ? data.error : ('HTTP ' + resp.status);
        var err = new Error(msg);
        err.status = resp.status;
        err.body = data;
        throw err;
      });
    });
  }

  function postJSON(path, obj) {
    return api(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(obj)});
  }

  function showMessage(text, info) {
    var el = $('message');
    el.textContent = text;
    el.className = 'message' + (info ? ' info' : '');
    el.hidden = !text;
  }

  /* -- tables ---------------------------------------------------------------------- */
  function fillResult(table, res) {
    var html = '<thead><tr>' + res.columns.map(function (c, j) {
      return '<th title="' + esc(res.types[j]) + '">' + esc(c) + '</th>';
    }).join('') + '</tr></thead><tbody>';
    res.rows.forEach(function (r) {
      html += '<tr>' + r.map(function (v) {
        var cls = v == null ? 'null' : (typeof v === 'number' ? 'num' : '');
        return '<td class="' + cls + '">' + (v == null ? 'null' : esc(fmt(v))) + '</td>';
      }).join('') + '</tr>';
    });
    table.innerHTML = html + '</tbody>';
  }

  /* -- traces and runs ------------------------------------------------------------- */
  function loadTraces() {
    return api('/api/traces').then(function (data) {
      var tbody = $('traces').tBodies[0];
      tbody.innerHTML = data.traces.map(function (t) {
        return '<tr data-trace="' + esc(t.name) + '"' +
          (t.name === state.trace ? ' class="active"' : '') + '><td class="num">' +
          t.trace_id + '</td><td>' + esc(t.name) + '</td><td>' + esc(t.kind) +
          '</td><td class="num">' + fmt(t.events) + '</td><td class="num">' + fmt(t.allocs) +
          '</td><td class="num">' + fmt(t.zone_pages) + '</td><td class="num">' +
          fmt(t.seconds) + '</td><td class="num">' + fmt(t.runs) + '</td></tr>';
      }).join('') || '<tr><td colspan="8" class="muted">no traces yet: ingest one below</td></tr>';
      var sel = $('run-trace');
      var keep = sel.value;
      sel.innerHTML = data.traces.map(function (t) {
        return '<option>' + esc(t.name) + '</option>';
      }).join('');
      if (keep) sel.value = keep;
      $('traces').setAttribute('data-loaded', '1');
    });
  }

  function loadRuns() {
    var q = state.trace ? '?trace=' + encodeURIComponent(state.trace) : '';
    $('runs-filter').innerHTML = state.trace
      ? 'of ' + esc(state.trace) + ' · <a href="#" id="all-runs">all</a>' : '';
    return api('/api/runs' + q).then(function (data) {
      state.runs = data.runs;
      var tbody = $('runs').tBodies[0];
      tbody.innerHTML = data.runs.map(function (r) {
        return '<tr><td><input type="checkbox" data-run="' + r.run_id + '"' +
          (state.selected.has(r.run_id) ? ' checked' : '') + '></td><td class="num">' +
          r.run_id + '</td><td>' + esc(r.trace) + '</td><td>' + esc(r.model) +
          '</td><td class="num">' + fmt(r.events) + '</td><td class="num">' +
          fmt(r.events_per_s) + '</td><td class="num">' + fmt(r.failures) +
          '</td><td class="num">' + fmt(r.fallbacks) + '</td><td class="num">' +
          fmt(r.free_pages) + '</td></tr>';
      }).join('') || '<tr><td colspan="9" class="muted">no runs yet: replay a trace below</td></tr>';
      $('runs').setAttribute('data-loaded', '1');
      updateSelection();
    });
  }

  function updateSelection() {
    var ids = Array.from(state.selected).sort(function (a, b) { return a - b; });
    $('selected').textContent = ids.length ? 'selected: ' + ids.join(', ') : '';
    $('compare').disabled = !ids.length;
    $('open-report').disabled = !ids.length;
    return ids;
  }

  function compare() {
    var ids = updateSelection();
    var order = $('order').value || '9';
    var box = $('report');
    box.removeAttribute('data-drawn');
    box.innerHTML = '<p class="muted">Loading…</p>';
    return api('/api/report/data?runs=' + ids.join(',') + '&order=' + order)
      .then(function (data) {
        if (!window.ReplayCharts) throw new Error('charts.js did not load');
        var uniq = function (xs) { return xs.filter(function (x, i) { return xs.indexOf(x) === i; }); };
        var runs = data.runs || [];
        data.title = data.title || (uniq(runs.map(function (r) { return String(r.model); }))
          .join(' vs ') + ' on ' + uniq(runs.map(function (r) { return String(r.trace); }))
          .join(', ') + ' (runs ' + ids.join(', ') + ')');
        // a failed allocation on a chart (its mark) or in the Failures table opens its
        // explanation below
        window.ReplayCharts.render(box, data, {onFailure: explainFailure});
      })
      .catch(function (err) {
        box.innerHTML = '';
        var p = document.createElement('div');
        p.className = 'error';
        p.setAttribute('role', 'alert');
        p.textContent = err.message;
        box.appendChild(p);
      });
  }

  function openReport() {
    var ids = updateSelection();
    var order = $('order').value || '9';
    var win = window.open('', '_blank');
    api('/api/report?runs=' + ids.join(',') + '&order=' + order).then(function (html) {
      var url = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
      if (win) { win.location = url; } else { window.location = url; }
    }).catch(function (err) {
      if (win) win.close();
      showMessage(err.message);
    });
  }

  /* -- SQL and named queries ------------------------------------------------------- */
  function runSql(promise) {
    var err = $('sql-error');
    var table = $('sql-table');
    err.hidden = true;
    $('sql-status').textContent = 'running…';
    table.removeAttribute('data-loaded');
    return promise.then(function (res) {
      fillResult(table, res);
      table.setAttribute('data-loaded', '1');
      $('sql-status').textContent = res.row_count + ' row' + (res.row_count === 1 ? '' : 's') +
        (res.truncated ? ' (truncated: more rows matched)' : '') + ' in ' +
        res.elapsed_ms.toFixed(1) + ' ms';
    }).catch(function (e) {
      table.innerHTML = '';
      $('sql-status').textContent = '';
      err.textContent = e.message;
      err.hidden = false;
    });
  }

  function loadQueries() {
    return api('/api/queries').then(function (data) {
      state.queries = data.queries;
      $('query-select').innerHTML = '<option value="">named query…</option>' +
        data.queries.map(function (q) {
          return '<option value="' + esc(q.name) + '" title="' + esc(q.description) + '">' +
            esc(q.name) + '</option>';
        }).join('');
    });
  }

  function pickQuery() {
    var name = $('query-select').value;
    var q = state.queries.filter(function (x) { return x.name === name; })[0];
    $('query-run').disabled = !q;
    $('query-params').innerHTML = q ? q.params.map(function (p) {
      return '<label title="' + esc(p.doc) + '">' + esc(p.name) + ' <input data-param="' +
        esc(p.name) + '" size="10" placeholder="' + esc(p.default == null ? 'required'
        : p.default) + '"></label>';
    }).join(' ') : '';
  }

  function runQuery() {
    var name = $('query-select').value;
    var params = new URLSearchParams();
    Array.prototype.forEach.call(document.querySelectorAll('#query-params input'),
      function (inp) { if (inp.value !== '') params.set(inp.dataset.param, inp.value); });
    var qs = params.toString();
    return runSql(api('/api/queries/' + encodeURIComponent(name) + (qs ? '?' + qs : '')));
  }

  /* -- jobs ------------------------------------------------------------------------ */
  function loadJobs() {
    return api('/api/jobs').then(function (data) {
      var active = 0;
      $('jobs').tBodies[0].innerHTML = data.jobs.slice().reverse().map(function (j) {
        if (j.status === 'queued' || j.status === 'running') active += 1;
        var what = j.kind === 'ingest' ? (j.params.file + ' → ' + j.params.name)
          : j.kind === 'explain' ? ('run ' + j.params.run +
            (j.params.seq == null ? ' (rank)' : ' seq ' + j.params.seq))
          : (j.params.trace + ' · ' + j.params.model);
        var p = j.progress || {};
        var bar = p.fraction == null ? '' : '<progress max="1" value="' + p.fraction +
          '"></progress> ' + Math.round(p.fraction * 100) + '%';
        var out = j.error ? '<span class="status-failed">' + esc(j.error.error) + '</span>'
          : (j.result ? esc(jobResult(j)) : '');
        return '<tr data-job="' + esc(j.id) + '" data-status="' + j.status + '"><td>' +
          esc(j.id) + '</td><td>' + j.kind + '</td><td>' + esc(what) +
          '</td><td class="status-' + j.status + '">' + j.status + '</td><td>' + bar +
          '</td><td class="num">' + fmt(j.seconds) + '</td><td>' + out + '</td></tr>';
      }).join('');
      var badge = $('jobs-badge');
      badge.hidden = !active;
      badge.textContent = active + ' job' + (active === 1 ? '' : 's') + ' running';
      return active;
    });
  }

  function jobResult(j) {
    var r = j.result;
    if (j.kind === 'run') return 'run ' + r.run_id;
    if (j.kind === 'ingest') return 'trace ' + r.name + ' (' + fmt(r.events) + ' events)';
    if (j.kind === 'validate') {
      return 'order >= 9 ' + fmt(r.order9_diff_pct) + '%, end ' + fmt(r.end_diff_pct) + '%';
    }
    if (j.kind === 'explain') {
      return r.ranked ? r.ranked.length + ' allocations ranked'
        : r.request.order + '-order ' + r.request.migratetype + ': ' + r.request.outcome;
    }
    return '';
  }

  /* -- explain --------------------------------------------------------------------- */
  function gridOf(rows, cols) {
    if (!rows || !rows.length) return '<p class="muted">none</p>';
    cols = cols || Object.keys(rows[0]);
    return '<div class="scroll"><table class="grid"><thead><tr>' + cols.map(function (c) {
      return '<th>' + esc(c) + '</th>';
    }).join('') + '</tr></thead><tbody>' + rows.map(function (r) {
      return '<tr>' + cols.map(function (c) {
        var v = r[c];
        if (Array.isArray(v)) v = v.join(', ');
        else if (v && typeof v === 'object') {
          v = Object.keys(v).map(function (k) { return k + ' ' + fmt(v[k]); }).join(', ');
        }
        return '<td>' + esc(RAW[c] ? (v == null ? '' : String(v)) : fmt(v)) + '</td>';
      }).join('') + '</tr>';
    }).join('') + '</tbody></table></div>';
  }
  // identifiers, not quantities: no thousands separators
  var RAW = {pfn: 1, blocked_by_pfn: 1, seq: 1, line: 1, run_id: 1, pid: 1, value: 0};

  function keyValues(obj) {
    return gridOf(Object.keys(obj).filter(function (k) {
      return obj[k] == null || typeof obj[k] !== 'object';
    }).map(function (k) { return {key: k, value: obj[k]}; }), ['key', 'value']);
  }

  function renderExplain(r) {
    var el = $('explain');
    if (r.ranked) {
      el.innerHTML = '<h3 data-part="ranked">Failed and at-risk allocations</h3>' +
        gridOf(r.ranked);
    } else {
      var st = r.state;
      var orders = st.nr_free.map(function (n, o) {
        return {order: o, nr_free: n, unmovable: st.nr_free_by_type.unmovable[o],
          movable: st.nr_free_by_type.movable[o],
          reclaimable: st.nr_free_by_type.reclaimable[o]};
      });
      var verdict = st.compaction_suitable;
      el.innerHTML = '<h3 data-part="request">Request</h3>' + keyValues(r.request) +
        '<h3 data-part="state">State just before it</h3>' + keyValues(st) +
        '<p>watermarks min/low/high ' + fmt(st.watermarks.min) + ' / ' +
        fmt(st.watermarks.low) + ' / ' + fmt(st.watermarks.high) + ' (ok: ' +
        ['min', 'low', 'high'].map(function (k) { return st.watermark_ok[k]; }).join(' / ') +
        '); compaction_suitable: <b>' + esc(verdict.verdict) + '</b> (' +
        esc(verdict.reason) + ')</p>' + gridOf(orders) +
        '<h3 data-part="candidates">Blocks nearest to free</h3>' +
        gridOf((r.candidates || []).map(function (c) {
          var row = {};
          Object.keys(c).forEach(function (k) { if (k.indexOf('map') !== 0) row[k] = c[k]; });
          return row;
        })) + '<div id="explain-maps"></div>' +
        '<h3 data-part="counterfactuals">Models forked from that state</h3>' +
        gridOf(r.counterfactuals || []);
      if (window.ReplayCharts && (r.candidates || []).length) {
        window.ReplayCharts.blockmap($('explain-maps'), {name: 'explain-candidates',
          title: 'The candidates in their pageblocks', note: '32 pages a row, the block ' +
          'outlined', order: r.request.order, candidates: r.candidates});
      }
    }
    el.setAttribute('data-loaded', '1');
  }

  function waitJob(id) {
    return api('/api/jobs/' + encodeURIComponent(id)).then(function (j) {
      if (j.status === 'done') return j;
      if (j.status === 'failed') throw new Error(j.error ? j.error.error : 'job failed');
      return new Promise(function (ok) { setTimeout(ok, 500); }).then(function () {
        return waitJob(id);
      });
    });
  }

  function explainFailure(run, seq) {
    $('explain-run').value = run;
    $('explain-seq').value = seq;
    $('explain-section').scrollIntoView();
    submitExplain();
  }

  function submitExplain(ev) {
    if (ev) ev.preventDefault();
    var body = {run: parseInt($('explain-run').value, 10),
      horizon: parseInt($('explain-horizon').value || '1000', 10)};
    if ($('explain-seq').value !== '') body.seq = parseInt($('explain-seq').value, 10);
    var models = $('explain-models').value.split(',').map(function (m) { return m.trim(); })
      .filter(function (m) { return m; });
    if (models.length) body.models = models;
    $('explain').removeAttribute('data-loaded');
    $('explain').innerHTML = '<p class="muted">explaining…</p>';
    postJSON('/api/jobs/explain', body).then(function (job) {
      loadJobs();
      pollJobs();
      return waitJob(job.id);
    }).then(function (j) { renderExplain(j.result); })
      .catch(function (e) {
        $('explain').innerHTML = '<p class="error" role="alert">' + esc(e.message) + '</p>';
        $('explain').setAttribute('data-loaded', 'error');
      });
  }

  function pollJobs() {
    if (state.polling) return;
    state.polling = setInterval(function () {
      loadJobs().then(function (active) {
        if (!active) {
          clearInterval(state.polling);
          state.polling = null;
          loadTraces();
          loadRuns();
        }
      }).catch(function () { /* keep polling */ });
    }, 700);
  }

  function submitIngest(ev) {
    ev.preventDefault();
    var file = $('ingest-file').files[0];
    if (!file) return;
    var form = new FormData();
    form.append('file', file, file.name);
    if ($('ingest-name').value) form.append('name', $('ingest-name').value);
    form.append('replace', $('ingest-replace').checked ? 'true' : 'false');
    api('/api/jobs/ingest', {method: 'POST', body: form}).then(function (job) {
      showMessage('ingest job ' + job.id + ' queued', true);
      loadJobs();
      pollJobs();
    }).catch(function (e) { showMessage(e.message); });
  }

  function submitRun(ev) {
    ev.preventDefault();
    postJSON('/api/jobs/run', {trace: $('run-trace').value, model: $('run-model').value,
      every: parseInt($('run-every').value || '1', 10)}).then(function (job) {
      showMessage('run job ' + job.id + ' queued', true);
      loadJobs();
      pollJobs();
    }).catch(function (e) { showMessage(e.message); });
  }

  /* -- wiring ---------------------------------------------------------------------- */
  function loadAll() {
    showMessage('');
    return api('/api/health').then(function (h) {
      $('token-form').hidden = true;
      $('db').textContent = h.db + ' · replay ' + h.version;
      $('run-model').innerHTML = h.presets.map(function (p) {
        return '<option>' + esc(p) + '</option>';
      }).join('');
      return Promise.all([loadTraces(), loadRuns(), loadQueries(), loadJobs()]);
    }).then(function (res) {
      if (res[3]) pollJobs();
      document.body.setAttribute('data-ready', '1');
    }).catch(function (e) { showMessage(e.message); });
  }

  function init() {
    loadToken();
    $('traces').addEventListener('click', function (ev) {
      var tr = ev.target.closest('tr[data-trace]');
      if (!tr) return;
      state.trace = state.trace === tr.dataset.trace ? null : tr.dataset.trace;
      Array.prototype.forEach.call($('traces').tBodies[0].rows, function (row) {
        row.classList.toggle('active', row.dataset.trace === state.trace);
      });
      loadRuns().catch(function (e) { showMessage(e.message); });
    });
    $('runs-filter').addEventListener('click', function (ev) {
      if (ev.target.id !== 'all-runs') return;
      ev.preventDefault();
      state.trace = null;
      loadTraces();
      loadRuns();
    });
    $('runs').addEventListener('change', function (ev) {
      var id = parseInt(ev.target.dataset.run, 10);
      if (isNaN(id)) return;
      if (ev.target.checked) state.selected.add(id); else state.selected.delete(id);
      updateSelection();
    });
    $('compare').addEventListener('click', compare);
    $('open-report').addEventListener('click', openReport);
    $('sql-run').addEventListener('click', function () {
      runSql(postJSON('/api/sql', {sql: $('sql-input').value}));
    });
    $('sql-input').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $('sql-run').click();
      }
    });
    $('query-select').addEventListener('change', pickQuery);
    $('query-run').addEventListener('click', runQuery);
    $('ingest-form').addEventListener('submit', submitIngest);
    $('run-form').addEventListener('submit', submitRun);
    $('explain-form').addEventListener('submit', submitExplain);
    $('token-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      state.token = $('token-input').value;
      try { sessionStorage.setItem('replay-token', state.token); } catch (e) { /* none */ }
      loadAll();
    });
    loadAll();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
