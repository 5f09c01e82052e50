// SQL page: an editor with the catalog beside it, POST /api/sql, a paged grid (100 rows a
// page), a CSV download, and a uPlot chart when the result has a time column and numbers.
"use strict";

(function () {
  const { h, fill, spinner, errorBox, dataTable, api, makeChart, fmtNum, state } = window.SluiceApp;

  const PAGE_ROWS = 100;
  const SQL_STORE = "sluice.console.sql";
  const DEFAULT_SQL = "select * from sensor_events limit 100";
  const ERROR_TITLES = {
    refused: "Refused: the console is read-only",
    sql: "SQL error",
    timeout: "Timed out",
    busy: "Busy: too many queries are running",
    network: "Cannot reach the server",
  };

  // Kept across page visits, so coming back shows the last result.
  const last = { result: null, error: null, sql: null, page: 0, chartMode: "line" };

  const isTime = (type) => /^(Timestamp|Date32|Date64)/.test(type || "");
  const isNumeric = (type) => /^(U?Int(8|16|32|64)|Float(16|32|64)|Decimal(32|64|128|256)?)\b/.test(type || "");

  /** Unix seconds of an arrow JSON time value ("2026-12-03T15:01:00Z", "2026-12-03", a number). */
  function toUnix(v, type) {
    if (v === null || v === undefined) return null;
    if (typeof v === "number") {
      if (/^Date32/.test(type)) return v * 86400;
      return v / 1000; // Date64 and millisecond numbers
    }
    let text = String(v).trim().replace(" ", "T");
    text = text.replace(/(\.\d{3})\d+/, "$1"); // micro/nanoseconds: keep milliseconds
    // No offset: arrow wrote a timestamp without a time zone; read it as UTC.
    if (/T/.test(text) && !/(Z|[+-]\d\d:?\d\d)$/.test(text)) text += "Z";
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms / 1000 : null;
  }

  function toNumber(v) {
    if (v === null || v === undefined || v === "") return null;
    const n = typeof v === "number" ? v : Number(v);
    return Number.isFinite(n) ? n : null;
  }

  function cellText(v) {
    if (v === null || v === undefined) return h("span", { class: "null" }, "NULL");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function renderGrid(box, res) {
    const cols = res.columns || [];
    const rows = res.rows || [];
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    last.page = Math.min(last.page, pages - 1);
    const from = last.page * PAGE_ROWS, to = Math.min(rows.length, from + PAGE_ROWS);
    const pager = (where) => h("div", { class: "pager", id: "sql-pager-" + where },
      h("button", { class: "btn small", type: "button", disabled: last.page === 0,
        on: { click: () => { last.page--; renderGrid(box, res); } } }, "‹ prev"),
      h("span", null, ` rows ${fmtNum(from + 1)}–${fmtNum(to)} of ${fmtNum(rows.length)}, page ${last.page + 1} of ${pages} `),
      h("button", { class: "btn small", type: "button", disabled: last.page >= pages - 1,
        on: { click: () => { last.page++; renderGrid(box, res); } } }, "next ›"));
    const table = h("table", { class: "data grid", id: "sql-grid" },
      h("thead", null, h("tr", null, cols.map((c) => h("th", { class: isNumeric(c.type) ? "num" : null, title: c.type },
        c.name, h("div", { class: "type" }, c.type))))),
      h("tbody", null, rows.slice(from, to).map((r) => h("tr", null, cols.map((c) =>
        h("td", { class: isNumeric(c.type) ? "num" : null }, cellText(r[c.name])))))));
    if (!rows.length) table.tBodies[0].appendChild(h("tr", { class: "empty" }, h("td", { colspan: cols.length || 1 }, "no rows")));
    fill(box, pages > 1 ? pager("top") : null, h("div", { class: "scroll grid-wrap" }, table), pages > 1 ? pager("bottom") : null);
  }

  /** The chart spec for a result, or null when it has no time column or no numbers. */
  function chartSpec(res) {
    const cols = res.columns || [];
    const tcol = cols.find((c) => isTime(c.type));
    const ncols = cols.filter((c) => isNumeric(c.type));
    if (!tcol || !ncols.length) return null;
    const pts = [];
    for (const r of res.rows || []) {
      const x = toUnix(r[tcol.name], tcol.type);
      if (x !== null) pts.push([x, ncols.map((c) => toNumber(r[c.name]))]);
    }
    pts.sort((a, b) => a[0] - b[0]);
    return { tcol, ncols, x: pts.map((p) => p[0]),
      series: ncols.map((c, i) => ({ label: c.name, values: pts.map((p) => p[1][i]) })) };
  }

  function renderChart(ctx, box, res) {
    ctx.dropChart("sql");
    const spec = chartSpec(res);
    if (!spec) {
      fill(box);
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const plot = h("div", { id: "sql-chart", class: "chart" });
    const toggle = (mode, label) => h("button", { type: "button", class: "btn small" + (last.chartMode === mode ? " active" : ""),
      id: "sql-chart-" + mode, on: { click: () => { last.chartMode = mode; renderChart(ctx, box, res); } } }, label);
    fill(box, h("div", { class: "chart-head" },
      h("h2", null, `${spec.ncols.map((c) => c.name).join(", ")} by ${spec.tcol.name}`),
      h("div", { class: "toggle" }, toggle("line", "line"), toggle("bars", "bars"))), plot);
    if (typeof uPlot === "undefined") return;
    ctx.setChart("sql", makeChart(plot, { x: spec.x, series: spec.series, height: 260, bars: last.chartMode === "bars",
      xLabel: spec.tcol.name }), plot);
  }

  function renderResult(ctx, els) {
    fill(els.error);
    els.error.hidden = true;
    els.error.removeAttribute("data-kind");
    if (last.error) {
      const e = last.error;
      els.error.hidden = false;
      els.error.dataset.kind = e.kind;
      fill(els.error, h("div", { class: "err-title" }, ERROR_TITLES[e.kind] || e.kind),
        h("pre", { class: "err-text" }, e.error));
      fill(els.meta);
      fill(els.grid);
      renderChart(ctx, els.chart, { columns: [], rows: [] });
      return;
    }
    const res = last.result;
    if (!res) { fill(els.meta, h("span", { class: "muted" }, "Run a query with the button or Ctrl+Enter.")); return; }
    fill(els.meta,
      h("span", { id: "sql-rows" }, fmtNum((res.rows || []).length) + ((res.rows || []).length === 1 ? " row" : " rows")),
      h("span", { id: "sql-elapsed" }, " · " + fmtNum(res.elapsed_ms) + " ms"),
      res.truncated ? h("span", { id: "sql-truncated", class: "warn" },
        ` · truncated: only the first ${fmtNum((res.rows || []).length)} rows (the console's row cap)`) : null);
    renderGrid(els.grid, res);
    renderChart(ctx, els.chart, res);
  }

  async function run(ctx, els, sql) {
    if (!sql.trim()) return;
    els.run.disabled = true;
    state.lastSql = null;
    last.sql = sql;
    fill(els.meta, spinner("running…"));
    els.grid.classList.add("stale");
    try {
      const res = await api("sql", { body: { sql, format: "json" } });
      last.result = res; last.error = null; last.page = 0;
      state.lastSql = res;
    } catch (e) {
      last.result = null;
      last.error = { kind: e.kind, error: e.message, status: e.status };
      state.lastSql = last.error;
    }
    state.sqlSeq++;
    els.run.disabled = false;
    els.grid.classList.remove("stale");
    if (ctx.alive()) renderResult(ctx, els);
  }

  async function downloadCsv(ctx, els, sql) {
    if (!sql.trim()) return;
    els.csv.disabled = true;
    try {
      const text = await api("sql", { body: { sql, format: "csv" }, text: true });
      const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      const a = h("a", { href: url, download: "sluice-query.csv", hidden: true });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      last.error = { kind: e.kind, error: "CSV download: " + e.message, status: e.status };
      last.result = null;
      state.lastSql = last.error;
      if (ctx.alive()) renderResult(ctx, els);
    } finally {
      els.csv.disabled = false;
    }
  }

  function insertAtCursor(ta, text) {
    ta.focus();
    const before = ta.value.slice(0, ta.selectionStart);
    if (before && !/[\s(,.]$/.test(before)) text = " " + text; // do not glue it to the previous word
    ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, "end");
    sessionStorage.setItem(SQL_STORE, ta.value);
  }

  function renderCatalog(box, ta) {
    api("catalog").then((cat) => {
      fill(box, (cat || []).length ? (cat || []).map((t) => h("div", { class: "cat-table" },
        h("button", { type: "button", class: "cat-name", title: "insert the table name", on: { click: () => insertAtCursor(ta, t.table) } }, t.table),
        h("ul", null, (t.columns || []).map((c) => h("li", null,
          h("button", { type: "button", class: "cat-col", title: "insert the column name", on: { click: () => insertAtCursor(ta, c.name) } }, c.name),
          h("span", { class: "type" }, c.type)))))) : h("div", { class: "muted" }, "no tables"));
    }).catch((e) => fill(box, errorBox(e)));
  }

  window.SluiceApp.page("sql", {
    title: "SQL",
    render(ctx) {
      const ta = h("textarea", { id: "sql-editor", spellcheck: "false", autocomplete: "off", rows: 6,
        placeholder: "select … from …   (Ctrl+Enter runs)" });
      ta.value = sessionStorage.getItem(SQL_STORE) || DEFAULT_SQL;
      const els = {
        run: h("button", { id: "sql-run", class: "btn primary", type: "button", title: "Ctrl+Enter" }, "Run"),
        csv: h("button", { id: "sql-csv", class: "btn", type: "button", title: "runs the query again and downloads its rows as CSV, up to the console\u2019s row cap (--sql-rows)" }, "Download CSV"),
        meta: h("div", { class: "sql-meta", id: "sql-meta" }),
        error: h("div", { id: "sql-error", class: "sql-error", hidden: true, role: "alert" }),
        grid: h("div", { class: "sql-grid-box" }),
        chart: h("section", { class: "card chart-card", id: "sql-chart-box", hidden: true }),
      };
      const catalog = h("div", { class: "catalog", id: "sql-catalog" }, spinner("loading the catalog…"));
      fill(ctx.root,
        h("div", { class: "page-head" }, h("h1", null, "SQL"),
          h("span", { class: "muted" }, "read-only DataFusion SQL over the lake; results are capped, paged 100 rows at a time")),
        h("div", { class: "sql-layout" },
          h("aside", { class: "card side" }, h("h2", null, "Tables"), catalog),
          h("div", { class: "sql-main" },
            h("section", { class: "card" }, ta,
              h("div", { class: "toolbar" }, els.run, els.csv, h("span", { class: "muted small" }, "Ctrl+Enter runs"), els.meta),
              els.error),
            h("section", { class: "card" }, els.grid),
            els.chart)));

      ta.addEventListener("input", () => sessionStorage.setItem(SQL_STORE, ta.value));
      ta.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(ctx, els, ta.value); }
      });
      els.run.addEventListener("click", () => run(ctx, els, ta.value));
      els.csv.addEventListener("click", () => downloadCsv(ctx, els, ta.value));
      renderCatalog(catalog, ta);
      renderResult(ctx, els);
    },
  });
})();
