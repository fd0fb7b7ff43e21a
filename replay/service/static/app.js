/* replay serve: the page. Vanilla JS over the JSON API (/api/...), no dependencies.
 *
 * Lists traces and runs, compares the ticked runs with the report's charts
 * (window.ReplayCharts from /assets/charts.js, data from /api/report/data),
 * runs SQL or a named query into a results table, and uploads / replays
 * traces as jobs (polled until they finish), browses tables a page at a time. Every
 * view's state is in the address (?runs=1,2&sql=...&table=steps&page=3, see
 * ADDRESS_KEYS), so a result can be linked; every table has CSV and JSON downloads.
 * With `replay serve --token T`, open the page as /#token=T or type the token into the
 * field it shows.
 */
(function () {
  'use strict';

  var state = {token: null, trace: null, runs: [], selected: new Set(), queries: [],
    polling: null, traces: [], jobs: [], tables: [], browse: null};
  var PAGE_ROWS = 50;  // rows per page of the table browser
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

  /* -- the address: every view's state, so that a result can be linked ------------- */
  // keys of the query string: trace (runs of one trace), runs and order (the comparison),
  // sql, query and p.NAME (a named query's parameters), explain, seq, models, horizon
  // (the explain form), table, where, page (the table browser)
  function address() { return new URLSearchParams(window.location.search); }

  function setAddress(changes) {
    var q = address();
    Object.keys(changes).forEach(function (k) {
      var v = changes[k];
      if (v == null || v === '') q.delete(k); else q.set(k, String(v));
    });
    if (changes.query !== undefined) {  // a named query's parameters go with it
      Array.from(q.keys()).forEach(function (k) {
        if (k.indexOf('p.') === 0 && !(k in changes)) q.delete(k);
      });
    }
    var text = q.toString(), url = window.location.pathname + (text ? '?' + text : '');
    if (url !== window.location.pathname + window.location.search) {
      history.pushState(null, '', url + window.location.hash);
    }
  }

  /* Restore the views the address names (on load and on back / forward). */
  function applyAddress() {
    var q = address(), work = [];
    var trace = q.get('trace');
    if ((trace || null) !== state.trace) {
      state.trace = trace || null;
      work.push(loadTraces(), loadRuns());
    }
    if (q.get('runs')) {
      var ids = q.get('runs').split(',').map(function (x) { return parseInt(x, 10); })
        .filter(function (x) { return !isNaN(x); });
      state.selected = new Set(ids);
      if (q.get('order')) $('order').value = q.get('order');
      Array.prototype.forEach.call(document.querySelectorAll('#runs input[data-run]'),
        function (inp) { inp.checked = state.selected.has(parseInt(inp.dataset.run, 10)); });
      work.push(compare(true));
    }
    if (q.get('query')) {
      $('query-select').value = q.get('query');
      pickQuery(true);
      Array.prototype.forEach.call(document.querySelectorAll('#query-params input'),
        function (inp) { inp.value = q.get('p.' + inp.dataset.param) || ''; });
      if (q.get('sql') != null) $('sql-input').value = q.get('sql');
      work.push(runQuery(true));
    } else if (q.get('sql') != null) {
      $('sql-input').value = q.get('sql');
      work.push(runSqlBox(true));
    }
    if (q.get('explain')) {
      $('explain-run').value = q.get('explain');
      $('explain-seq').value = q.get('seq') || '';
      $('explain-models').value = q.get('models') || '';
      $('explain-horizon').value = q.get('horizon') || '1000';
      submitExplain(null, true);
    }
    if (q.get('table')) {
      work.push(browse(q.get('table'), parseInt(q.get('page') || '1', 10) - 1,
        q.get('where') || '', true));
    }
    return Promise.all(work);
  }

  /* -- tables ---------------------------------------------------------------------- */
  /* CSV and JSON links under a table (once), of the rows it shows: columns() and rows()
   * give them when a link is clicked. */
  function addDownloads(table, name, columns, rows) {
    var box = table.closest('.scroll') || table;
    var next = box.nextElementSibling;
    if (next && next.classList.contains('rc-downloads')) next.remove();
    if (!window.ReplayCharts) return;
    var links = window.ReplayCharts.downloads(columns, rows, name);
    links.setAttribute('data-for', table.id);
    box.insertAdjacentElement('afterend', links);
  }

  function objectRows(list) {  // [{...}] -> columns, rows
    var cols = list.length ? Object.keys(list[0]) : [];
    return {columns: cols, rows: list.map(function (o) { return cols.map(function (c) {
      return o[c];
    }); })};
  }

  function fillResult(table, res, name) {
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
    addDownloads(table, name || 'result', res.columns, res.rows);
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
      state.traces = data.traces;
      addDownloads($('traces'), 'traces', function () { return objectRows(state.traces).columns; },
        function () { return objectRows(state.traces).rows; });
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
      addDownloads($('runs'), 'runs', function () { return objectRows(state.runs).columns; },
        function () { return objectRows(state.runs).rows; });
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

  function compare(restoring) {
    var ids = updateSelection();
    var order = $('order').value || '9';
    if (restoring !== true) setAddress({runs: ids.join(','), order: order === '9' ? null : order});
    if (!ids.length) return Promise.resolve();
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
  function runSqlBox(restoring) {
    var sql = $('sql-input').value, body = {sql: sql}, params = queryParams(true);
    Object.keys(params).forEach(function (k) {  // only the parameters the SQL names
      if (!new RegExp('\\$' + k + '\\b').test(sql)) delete params[k];
    });
    if (Object.keys(params).length) body.params = params;
    if (restoring !== true) {
      var ch = {sql: sql, query: $('query-select').value || null};
      Object.keys(params).forEach(function (k) { ch['p.' + k] = params[k]; });
      setAddress(ch);
    }
    return runSql(postJSON('/api/sql', body));
  }

  /* The named query's parameters from their fields, typed as the query declares them
   * (typed: numbers for BIGINT and DOUBLE, for POST /api/sql) or as text. */
  function queryParams(typed) {
    var q = selectedQuery(), out = {};
    Array.prototype.forEach.call(document.querySelectorAll('#query-params input'),
      function (inp) {
        if (inp.value === '') return;
        var p = q ? q.params.filter(function (x) { return x.name === inp.dataset.param; })[0]
          : null;
        var numeric = p && /INT|DOUBLE|FLOAT|DECIMAL|REAL/.test(p.type || '');
        out[inp.dataset.param] = typed && numeric && !isNaN(+inp.value) ? +inp.value : inp.value;
      });
    // a named query's defaults, for an edited copy sent as SQL
    if (typed && q) {
      q.params.forEach(function (p) {
        if (!(p.name in out) && p.default != null) {
          out[p.name] = /INT|DOUBLE|FLOAT|DECIMAL|REAL/.test(p.type || '') && !isNaN(+p.default)
            ? +p.default : p.default;
        }
      });
    }
    return out;
  }

  function selectedQuery() {
    var name = $('query-select').value;
    return state.queries.filter(function (x) { return x.name === name; })[0] || null;
  }

  function runSql(promise) {
    var err = $('sql-error');
    var table = $('sql-table');
    err.hidden = true;
    $('sql-status').textContent = 'running…';
    table.removeAttribute('data-loaded');
    return promise.then(function (res) {
      fillResult(table, res, $('query-select').value || 'sql');
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

  function pickQuery(restoring) {
    var q = selectedQuery();
    $('query-run').disabled = !q;
    // the query's SQL, to read or edit (an edited copy runs as SQL with the parameters)
    if (q) $('sql-input').value = q.sql;
    $('query-sql-note').hidden = !q;
    if (restoring !== true && q) setAddress({query: q.name, sql: null});
    $('query-params').innerHTML = q ? q.params.map(function (p) {
      return '<label title="' + esc(p.doc) + '">' + esc(p.name) + ' <input data-param="' +
        esc(p.name) + '" size="10" placeholder="' + esc(p.default == null ? 'required'
        : p.default) + '"></label>';
    }).join(' ') : '';
  }

  function runQuery(restoring) {
    var q = selectedQuery();
    if (!q) return Promise.resolve();
    if ($('sql-input').value !== q.sql) return runSqlBox(restoring);  // edited: run the copy
    var given = queryParams(false), params = new URLSearchParams();
    Object.keys(given).forEach(function (k) { params.set(k, given[k]); });
    if (restoring !== true) {
      var ch = {query: q.name, sql: null};
      Object.keys(given).forEach(function (k) { ch['p.' + k] = given[k]; });
      setAddress(ch);
    }
    var qs = params.toString();
    return runSql(api('/api/queries/' + encodeURIComponent(q.name) + (qs ? '?' + qs : '')));
  }

  /* -- the table browser ----------------------------------------------------------- */
  function quoteIdent(name) { return '"' + name.replace(/"/g, '""') + '"'; }

  function loadTables() {
    return api('/api/sql', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({sql: "SELECT table_name, estimated_size, false AS is_view " +
        "FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal " +
        "UNION ALL SELECT view_name, NULL, true FROM duckdb_views() " +
        "WHERE schema_name = 'main' AND NOT internal AND NOT temporary ORDER BY 1"})
    }).then(function (res) {
      state.tables = res.rows.map(function (r) { return r[0]; });
      state.views = res.rows.filter(function (r) { return r[2]; }).map(function (r) {
        return r[0];
      });
      $('table-select').innerHTML = '<option value="">table…</option>' +
        state.tables.map(function (t, i) {
          return '<option value="' + esc(t) + '">' + esc(t) + (res.rows[i][2] ? ' (view)'
            : ' (~' + fmt(res.rows[i][1]) + ' rows)') + '</option>';
        }).join('');
    });
  }

  /* Page ``page`` (from 0) of a table, PAGE_ROWS rows in storage order (rowid; a view,
   * which has none, such as steps, by all its columns: run_id, seq, ...), with an
   * optional WHERE condition; the SQL it ran is shown and opens in the SQL box. */
  function browse(name, page, where, restoring) {
    if (state.tables.indexOf(name) < 0) {
      $('browse-status').textContent = 'no table named ' + name;
      return Promise.resolve();
    }
    page = Math.max(0, page || 0);
    $('table-select').value = name;
    $('browse-where').value = where || '';
    var from = 'FROM ' + quoteIdent(name) + (where ? ' WHERE ' + where : '');
    var order = (state.views || []).indexOf(name) < 0 ? ' ORDER BY rowid' : ' ORDER BY ALL';
    var sql = 'SELECT * ' + from + order + ' LIMIT ' + PAGE_ROWS + ' OFFSET ' +
      page * PAGE_ROWS;
    if (restoring !== true) setAddress({table: name, page: page ? page + 1 : null, where: where});
    var table = $('browse-table');
    table.removeAttribute('data-loaded');
    $('browse-error').hidden = true;
    return Promise.all([postJSON('/api/sql', {sql: 'SELECT count(*) AS n ' + from}),
      postJSON('/api/sql', {sql: sql})]).then(function (res) {
      var total = res[0].rows[0][0], pages = Math.max(1, Math.ceil(total / PAGE_ROWS));
      state.browse = {name: name, page: page, where: where, pages: pages, sql: sql};
      fillResult(table, res[1], name + '-page' + (page + 1));
      $('browse-status').textContent = fmt(total) + ' rows · page ' + (page + 1) + ' of ' +
        fmt(pages);
      $('browse-sql').textContent = sql;
      $('browse-prev').disabled = page <= 0;
      $('browse-next').disabled = page + 1 >= pages;
      table.setAttribute('data-loaded', '1');
      table.setAttribute('data-page', String(page + 1));
    }).catch(function (e) {
      table.innerHTML = '';
      $('browse-error').textContent = e.message;
      $('browse-error').hidden = false;
    });
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
          : (j.params.trace + ' · ' + j.params.model + (j.params.start === 'observed'
            ? ' from the kernel\'s state' + (j.params.at != null ? ' at ' + j.params.at : '')
            : '') + (j.params.until != null ? ' until ' + j.params.until : ''));
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
      state.jobs = data.jobs;
      addDownloads($('jobs'), 'jobs', ['id', 'kind', 'status', 'params', 'seconds', 'result',
        'error'], function () {
        return state.jobs.map(function (j) {
          return [j.id, j.kind, j.status, j.params, j.seconds, j.result, j.error];
        });
      });
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

  function submitExplain(ev, restoring) {
    if (ev) ev.preventDefault();
    var body = {run: parseInt($('explain-run').value, 10),
      horizon: parseInt($('explain-horizon').value || '1000', 10)};
    if (restoring !== true) {
      setAddress({explain: $('explain-run').value, seq: $('explain-seq').value,
        models: $('explain-models').value.trim(),
        horizon: body.horizon === 1000 ? null : body.horizon});
    }
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

  /* The run form: what POST /api/jobs/run takes (replay run's options); empty fields are
   * left to the server's defaults. */
  function runBody() {
    var body = {trace: $('run-trace').value, model: $('run-model').value,
      every: parseInt($('run-every').value || '1', 10), start: $('run-start').value,
      fill_from_snapshot: $('run-fill').checked};
    [['run-at', 'at'], ['run-until', 'until'], ['run-pageblock-every', 'pageblock_every'],
      ['run-zone-pages', 'zone_pages']].forEach(function (f) {
      var v = $(f[0]).value;
      if (v !== '') body[f[1]] = parseInt(v, 10);
    });
    return body;
  }

  function submitRun(ev) {
    ev.preventDefault();
    postJSON('/api/jobs/run', runBody()).then(function (job) {
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
      state.trace = address().get('trace') || null;
      return Promise.all([loadTraces(), loadRuns(), loadQueries(), loadJobs(), loadTables()]);
    }).then(function (res) {
      if (res[3]) pollJobs();
      document.body.setAttribute('data-ready', '1');
      return applyAddress();
    }).catch(function (e) { showMessage(e.message); });
  }

  function init() {
    loadToken();
    $('traces').addEventListener('click', function (ev) {
      var tr = ev.target.closest('tr[data-trace]');
      if (!tr) return;
      state.trace = state.trace === tr.dataset.trace ? null : tr.dataset.trace;
      setAddress({trace: state.trace});
      Array.prototype.forEach.call($('traces').tBodies[0].rows, function (row) {
        row.classList.toggle('active', row.dataset.trace === state.trace);
      });
      loadRuns().catch(function (e) { showMessage(e.message); });
    });
    $('runs-filter').addEventListener('click', function (ev) {
      if (ev.target.id !== 'all-runs') return;
      ev.preventDefault();
      state.trace = null;
      setAddress({trace: null});
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
    $('sql-run').addEventListener('click', function () { runSqlBox(); });
    $('sql-input').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $('sql-run').click();
      }
    });
    $('query-select').addEventListener('change', function () { pickQuery(); });
    $('query-run').addEventListener('click', function () { runQuery(); });
    $('table-select').addEventListener('change', function () {
      if ($('table-select').value) browse($('table-select').value, 0, $('browse-where').value);
    });
    $('browse-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      if ($('table-select').value) browse($('table-select').value, 0, $('browse-where').value);
    });
    $('browse-prev').addEventListener('click', function () {
      var b = state.browse;
      if (b) browse(b.name, b.page - 1, b.where);
    });
    $('browse-next').addEventListener('click', function () {
      var b = state.browse;
      if (b) browse(b.name, b.page + 1, b.where);
    });
    $('browse-edit').addEventListener('click', function (ev) {
      ev.preventDefault();
      if (!state.browse) return;
      $('query-select').value = '';
      pickQuery(true);
      $('sql-input').value = state.browse.sql;
      $('sql-section').scrollIntoView();
      runSqlBox();
    });
    $('run-start').addEventListener('change', function () {
      $('run-at').disabled = $('run-start').value !== 'observed';
    });
    window.addEventListener('popstate', function () {
      applyAddress().catch(function (e) { showMessage(e.message); });
    });
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
