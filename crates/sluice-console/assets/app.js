// sluice console: the core of the one-page app (plain ES2020, no framework, no build step).
// This file holds the helpers every page uses (DOM building, the /api client with the bearer
// key, formatting, metrics look-ups, uPlot charts), the hash router and the 5 s polling.
// The pages live in pages/*.js and register themselves with `SluiceApp.page(name, def)`.
// The Content-Security-Policy forbids inline scripts and handlers: everything is wired here
// with addEventListener, and untrusted text (payloads, errors) only ever goes in text nodes.
"use strict";

(function () {
  // State a browser test can read (see tests/browser/console.py).
  const state = (window.sluiceConsole = { charts: {}, lastSql: null, sqlSeq: 0, page: "pipeline" });

  const KEY_STORE = "sluice.console.key";
  const POLL_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- DOM building -------------------------------------------------------------------------

  function append(el, kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) append(el, k);
      else if (k instanceof Node) el.appendChild(k);
      else el.appendChild(document.createTextNode(String(k)));
    }
    return el;
  }

  function setProps(el, props, svg) {
    for (const [name, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (name === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (name === "text") el.textContent = v;
      else if (name === "class" && !svg) el.className = v;
      else if (name === "dataset") Object.assign(el.dataset, v);
      else if (!svg && (name === "value" || name === "checked" || name === "disabled")) el[name] = v;
      else el.setAttribute(name, v === true ? "" : String(v));
    }
    return el;
  }

  /** h("div", {class: "x", on: {click: fn}}, "text", child, [more]) */
  function h(tag, props, ...kids) {
    return append(setProps(document.createElement(tag), props, false), kids);
  }

  function s(tag, props, ...kids) {
    return append(setProps(document.createElementNS(SVG_NS, tag), props, true), kids);
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  /** Replace the contents of el with kids. */
  function fill(el, ...kids) {
    return append(clear(el), kids);
  }

  function spinner(text) {
    return h("div", { class: "loading" }, h("span", { class: "spinner" }), text || "loading…");
  }

  /** A red "down" banner (or nothing). */
  function downBanner(what, error, props) {
    return h("div", Object.assign({ class: "banner down" }, props || {}),
      h("strong", null, what + " down"), error ? ": " + error : "");
  }

  function errorBox(err, props) {
    return h("div", Object.assign({ class: "banner down" }, props || {}),
      h("strong", null, err.kind || "error"), ": " + (err.message || err.error || String(err)));
  }

  /**
   * A dense table. cols: [{label, cls, title, get(row) -> node|string}], rows: array.
   * opts: {id, rowClass(row), empty: "text", rowProps(row)}.
   */
  function dataTable(cols, rows, opts) {
    opts = opts || {};
    const thead = h("thead", null, h("tr", null, cols.map((c) =>
      h("th", { class: /\bnum\b/.test(c.cls || "") ? "num" : null, title: c.title }, c.label))));
    const tbody = h("tbody");
    for (const r of rows) {
      const tr = h("tr", Object.assign({ class: opts.rowClass ? opts.rowClass(r) : null },
        opts.rowProps ? opts.rowProps(r) : {}));
      for (const c of cols) {
        const v = c.get(r);
        tr.appendChild(h("td", { class: c.cls }, v === null || v === undefined ? "–" : v));
      }
      tbody.appendChild(tr);
    }
    if (!rows.length && opts.empty) {
      tbody.appendChild(h("tr", { class: "empty" }, h("td", { colspan: cols.length }, opts.empty)));
    }
    return h("table", { class: "data" + (opts.cls ? " " + opts.cls : ""), id: opts.id }, thead, tbody);
  }

  // ---- formatting ---------------------------------------------------------------------------

  const nf = new Intl.NumberFormat("en-US");

  function fmtNum(v) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : nf.format(v);
  }

  function fmtRate(v) {
    return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(1) + "/s";
  }

  function fmtBytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  const pad = (n, w) => String(n).padStart(w || 2, "0");

  /** Local time as ISO 8601 (without the offset; the offset is in the tooltip of fmtTimeEl). */
  function fmtTime(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function tzOffset(ms) {
    const off = -new Date(ms).getTimezoneOffset();
    return (off >= 0 ? "+" : "-") + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
  }

  /** A <time> element: local ISO text, UTC and offset in the tooltip. */
  function timeEl(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
    return h("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() +
      " (local offset " + tzOffset(ms) + ")" }, fmtTime(ms));
  }

  /** A duration in seconds: "850 ms", "12.0 s", "4 min 10 s", "3 h 5 min". */
  function fmtDur(sec) {
    if (sec === null || sec === undefined || !Number.isFinite(sec)) return "–";
    const a = Math.abs(sec), sign = sec < 0 ? "-" : "";
    if (a < 1) return sign + Math.round(a * 1000) + " ms";
    if (a < 60) return sign + a.toFixed(1) + " s";
    if (a < 3600) return sign + Math.floor(a / 60) + " min " + Math.floor(a % 60) + " s";
    if (a < 86400) return sign + Math.floor(a / 3600) + " h " + Math.floor((a % 3600) / 60) + " min";
    return sign + Math.floor(a / 86400) + " d " + Math.floor((a % 86400) / 3600) + " h";
  }

  // ---- the API client with the bearer key ---------------------------------------------------

  class ApiError extends Error {
    constructor(kind, message, status) {
      super(message);
      this.kind = kind;
      this.status = status;
    }
  }

  let keyWaiter = null;

  /** Shows the key prompt; resolves once a key is stored. Concurrent 401s share one prompt. */
  function askKey(note) {
    if (keyWaiter) return keyWaiter;
    keyWaiter = new Promise((resolve) => {
      const input = h("input", { id: "key-input", type: "password", autocomplete: "off",
        placeholder: "sk_…", required: true });
      const form = h("form", { class: "key-form" },
        h("h2", null, "Console key"),
        h("p", null, note),
        h("p", { class: "muted" }, "The key is kept in this tab's session storage only."),
        h("div", { class: "row" }, input, h("button", { id: "key-submit", type: "submit", class: "btn primary" }, "Use key")));
      const overlay = h("div", { id: "key-prompt", class: "overlay" }, form);
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORE, key);
        overlay.remove();
        keyWaiter = null;
        renderKeyState();
        resolve();
      });
      document.body.appendChild(overlay);
      input.focus();
    });
    return keyWaiter;
  }

  /**
   * fetch /api/<path>. Sends the key if one is stored; on 401 asks for a key and retries.
   * Resolves with the parsed JSON (or the text when opts.text), rejects with an ApiError whose
   * kind is the server's error kind (or "network", "http").
   */
  async function api(path, opts) {
    opts = opts || {};
    for (;;) {
      const key = sessionStorage.getItem(KEY_STORE);
      const headers = { Accept: opts.text ? "text/csv, */*" : "application/json" };
      if (key) headers.Authorization = "Bearer " + key;
      const init = { method: opts.method || "GET", headers, cache: "no-store" };
      if (opts.body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(opts.body);
        if (!opts.method) init.method = "POST";
      }
      let resp;
      try {
        resp = await fetch("api/" + path, init);
      } catch (e) {
        throw new ApiError("network", "cannot reach the console server (" + e.message + ")", 0);
      }
      if (resp.status === 401) {
        // Another request may have got a new key from the prompt meanwhile: just retry.
        if (sessionStorage.getItem(KEY_STORE) !== key) continue;
        await askKey(key ? "The server refused the key; enter another one."
          : "This console is not on loopback and needs its key.");
        continue;
      }
      const body = await resp.text();
      if (resp.ok) {
        if (opts.text) return body;
        try { return JSON.parse(body); } catch (e) {
          throw new ApiError("http", "the server's answer is not JSON (" + e.message + ")", resp.status);
        }
      }
      let err = null;
      try { err = JSON.parse(body); } catch (e) { /* not JSON */ }
      if (err && typeof err === "object" && err.kind) throw new ApiError(err.kind, err.error || "", resp.status);
      throw new ApiError("http", `HTTP ${resp.status} ${resp.statusText}` + (body ? ": " + body.slice(0, 300) : ""), resp.status);
    }
  }

  function renderKeyState() {
    const el = document.getElementById("key-state");
    if (!el) return;
    if (!sessionStorage.getItem(KEY_STORE)) return clear(el);
    fill(el, h("button", { class: "linkish", type: "button", on: { click: () => {
      sessionStorage.removeItem(KEY_STORE);
      renderKeyState();
    } } }, "forget key"));
  }

  // ---- metrics ------------------------------------------------------------------------------

  /** Look-ups over a GET /api/metrics answer. */
  class Metrics {
    constructor(m) {
      this.raw = m || { times: [], series: [] };
      this.times = this.raw.times || [];
      this.byName = new Map();
      for (const sr of this.raw.series || []) {
        if (!this.byName.has(sr.name)) this.byName.set(sr.name, []);
        this.byName.get(sr.name).push(sr);
      }
    }
    /** All series of that name (optionally whose labels include `match`). */
    all(name, match) {
      const list = this.byName.get(name) || [];
      if (!match) return list;
      return list.filter((sr) => Object.entries(match).every(([k, v]) => sr.labels && sr.labels[k] === String(v)));
    }
    /** Sum of the matching series' last values, null when none has a value. */
    last(name, match) {
      let sum = null;
      for (const sr of this.all(name, match)) {
        const v = lastValue(sr.values);
        if (v !== null) sum = (sum || 0) + v;
      }
      return sum;
    }
    /** Per-second rate of a counter over its last two samples (summed over matching series). */
    rate(name, match) {
      let sum = null;
      for (const sr of this.all(name, match)) {
        const r = counterRate(this.times, sr.values);
        if (r !== null) sum = (sum || 0) + r;
      }
      return sum;
    }
    lastTime() {
      return this.times.length ? this.times[this.times.length - 1] : null;
    }
  }

  function lastValue(values) {
    for (let i = (values || []).length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
    return null;
  }

  function counterRate(times, values) {
    const idx = [];
    for (let i = (values || []).length - 1; i >= 0 && idx.length < 2; i--) {
      if (values[i] !== null && values[i] !== undefined) idx.push(i);
    }
    if (idx.length < 2) return null;
    const [b, a] = idx;
    const dt = times[b] - times[a];
    const dv = values[b] - values[a];
    if (!(dt > 0)) return null;
    return dv < 0 ? values[b] / dt : dv / dt; // a counter reset: count from zero
  }

  // ---- charts (uPlot) -----------------------------------------------------------------------

  const PALETTE = ["#1f6feb", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285",
    "#c2255c", "#5c940d", "#364fc7", "#795548", "#495057", "#f08c00"];

  /** Time axis ticks in local ISO style: "15:07", "15:07:30", a date where the day changes. */
  function timeTicks(u, splits, axisIdx, space, incr) {
    let prevDay = null;
    return splits.map((v, i) => {
      if (v === null) return "";
      const d = new Date(v * 1000);
      const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      const clock = incr >= 86400 ? "" : incr % 60 === 0 ? `${pad(d.getHours())}:${pad(d.getMinutes())}`
        : `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      const showDay = i === 0 || day !== prevDay || incr >= 86400;
      prevDay = day;
      return showDay ? (clock ? clock + "\n" + day : day) : clock;
    });
  }

  /**
   * A uPlot chart in el. spec: {series: [{label, values}], x: [...unix s], height, yFmt(v),
   * yLabel, bars, time (default true)}. Returns the uPlot instance.
   */
  function makeChart(el, spec) {
    const fmtY = spec.yFmt || ((v) => fmtNum(v));
    const bars = spec.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : null;
    const n = spec.series.length;
    const opts = {
      width: Math.max(200, el.clientWidth || 600),
      height: spec.height || 240,
      scales: { x: { time: spec.time !== false } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      axes: [
        { stroke: "#57606a", grid: { stroke: "#eceef1" }, ticks: { stroke: "#d0d7de" },
          values: spec.time === false ? undefined : timeTicks },
        { stroke: "#57606a", grid: { stroke: "#eceef1" }, ticks: { stroke: "#d0d7de" }, size: 64,
          label: spec.yLabel, labelSize: spec.yLabel ? 18 : 0,
          values: (u, vals) => vals.map((v) => (v === null ? "" : fmtY(v))) },
      ],
      series: [{ label: spec.xLabel || "time", value: spec.time === false ? undefined : (u, v) => (v === null ? "–" : fmtTime(v * 1000)) }]
        .concat(spec.series.map((sr, i) => ({
          label: sr.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          fill: bars ? PALETTE[i % PALETTE.length] + (n > 1 ? "66" : "bb") : undefined,
          paths: bars || undefined,
          points: { show: !bars && spec.x.length <= 24 },
          value: (u, v) => (v === null || v === undefined ? "–" : fmtY(v)),
        }))),
    };
    const data = [spec.x].concat(spec.series.map((sr) => sr.values));
    return new uPlot(opts, data, el);
  }

  // ---- pages, router, polling ---------------------------------------------------------------

  const pages = {};
  let current = null; // {name, ctx}

  function page(name, def) {
    pages[name] = def;
  }

  /** The per-page context handed to a page's render(). */
  function makeCtx(name, arg, root) {
    const cleanups = [];
    const charts = new Map(); // key -> {u, el, height}
    const ctx = {
      name, arg, root, live: true,
      alive: () => ctx.live,
      onLeave: (fn) => cleanups.push(fn),
      /** Runs fn now and every 5 s while the tab is visible, until the page is left. */
      poll(fn) {
        let timer = null, running = false;
        const tick = async () => {
          timer = null;
          if (!ctx.live || document.visibilityState !== "visible") return;
          running = true;
          try { await fn(); } catch (e) { showFault(e); }
          running = false;
          if (ctx.live && !timer) timer = setTimeout(tick, POLL_MS);
        };
        const onVis = () => {
          if (document.visibilityState === "visible" && !timer && !running) tick();
        };
        document.addEventListener("visibilitychange", onVis);
        cleanups.push(() => { clearTimeout(timer); document.removeEventListener("visibilitychange", onVis); });
        tick();
      },
      /** Registers a uPlot chart under window.sluiceConsole.charts[key] (replacing any old one). */
      setChart(key, u, el) {
        ctx.dropChart(key);
        // Follow the container's width (window resizes, a scrollbar appearing, …).
        const ro = new ResizeObserver(() => {
          const w = Math.max(200, el.clientWidth);
          if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: u.height });
        });
        ro.observe(el);
        charts.set(key, { u, el, ro });
        state.charts[key] = u;
      },
      dropChart(key) {
        const c = charts.get(key);
        if (!c) return;
        c.ro.disconnect();
        c.u.destroy();
        charts.delete(key);
        if (state.charts[key] === c.u) delete state.charts[key];
      },
      chart: (key) => (charts.get(key) || {}).u,
      leave() {
        ctx.live = false;
        for (const fn of cleanups) { try { fn(); } catch (e) { /* ignore */ } }
        for (const key of [...charts.keys()]) ctx.dropChart(key);
      },
    };
    return ctx;
  }

  function showFault(e) {
    // A bug in a page must not leave a blank page: show it, and keep it in the console.
    const main = document.getElementById("main");
    if (main) main.prepend(h("div", { class: "banner down fault" }, h("strong", null, "console error"), ": " + (e && e.message || e)));
    console.error(e); // eslint-disable-line no-console
  }

  function parseRoute() {
    const raw = (location.hash || "").replace(/^#\/?/, "");
    const parts = raw.split("/").filter(Boolean);
    const name = parts[0] || "pipeline";
    const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : null;
    if (!pages[name]) return { name: "pipeline", arg: null, route: "pipeline" };
    return { name, arg, route: raw || "pipeline" };
  }

  function route() {
    const r = parseRoute();
    if (current) current.ctx.leave();
    const main = clear(document.getElementById("main"));
    state.page = r.route;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === r.name);
    }
    const def = pages[r.name];
    document.title = (def.title ? def.title + " · " : "") + "sluice console";
    const ctx = makeCtx(r.name, r.arg, main);
    current = { name: r.name, ctx };
    try {
      def.render(ctx);
    } catch (e) {
      showFault(e);
    }
  }

  function start() {
    if (typeof uPlot === "undefined") {
      document.getElementById("main").appendChild(downBanner("charts", "uPlot did not load"));
    }
    window.addEventListener("hashchange", route);
    renderKeyState();
    route();
  }

  window.SluiceApp = {
    state, page, h, s, clear, fill, spinner, downBanner, errorBox, dataTable,
    fmtNum, fmtRate, fmtBytes, fmtTime, fmtDur, timeEl, api, ApiError, Metrics,
    lastValue, counterRate, makeChart, PALETTE,
  };

  // The page scripts are loaded with `defer` after this one, and deferred scripts all run
  // before DOMContentLoaded (document.readyState is "interactive" meanwhile).
  if (document.readyState === "complete") setTimeout(start, 0);
  else document.addEventListener("DOMContentLoaded", start);
})();
