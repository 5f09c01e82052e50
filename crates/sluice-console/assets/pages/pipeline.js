// Pipeline page: topics -> streams -> tables/windows/alert rules -> side topics, as a layered
// SVG graph with live rates on the edges (from the counters in /api/metrics).
"use strict";

(function () {
  const { h, s, fill, spinner, downBanner, errorBox, api, Metrics, fmtRate, fmtTime } = window.SluiceApp;

  const NODE_W = 200, NODE_H = 44, DUMMY_H = 12, ROW_GAP = 16, COL_X = [10, 300, 590, 880], WIDTH = 1090;
  const COL_TITLES = ["Kafka topics", "Streams", "Tables · windows · alert rules", "Side topics"];

  /** Nodes and edges of the pipeline. Each edge has a `rate(metrics)` for its label. */
  function buildGraph(p) {
    const nodes = new Map(), edges = [];
    const node = (id, col, name, sub, kind, extra) => {
      if (!nodes.has(id)) nodes.set(id, Object.assign({ id, col, name, sub, kind, order: nodes.size }, extra || {}));
      return nodes.get(id);
    };
    const edge = (from, to, kind, rate) => { if (nodes.has(from) && nodes.has(to)) edges.push({ from, to, kind, rate }); };

    for (const st of p.streams || []) {
      node("topic:" + st.topic, 0, st.topic, "topic", "topic");
      node("stream:" + st.name, 1, st.name, "stream · " + (st.format || "?"), "stream");
      edge("topic:" + st.topic, "stream:" + st.name, "read", (m) => m.rate("sluice_records_read_total", { topic: st.topic }));
    }
    for (const t of p.tables || []) {
      node("table:" + t.name, 2, t.name, (t.format || "") + " table", "table", { link: "#/tables/" + encodeURIComponent(t.name) });
      edge("stream:" + t.from, "table:" + t.name, "landed", (m) => m.rate("sluice_rows_landed_total", { table: t.name }));
    }
    for (const w of p.windows || []) {
      node("window:" + w.name, 2, w.name, "window · " + (w.kind || ""), "window", { link: "#/tables/" + encodeURIComponent(w.name) });
      edge("stream:" + w.from, "window:" + w.name, "landed", (m) => m.rate("sluice_rows_landed_total", { table: w.name }));
    }
    for (const a of p.alerts || []) {
      node("alert:" + a.name, 2, a.name, "alert · " + (a.when || ""), "alert", { title: a.when });
      edge("stream:" + a.from, "alert:" + a.name, "eval", null);
    }
    // Side topics last, so that their order follows their sources.
    for (const st of p.streams || []) {
      if (!st.dead_letter_topic) continue;
      node("side:" + st.dead_letter_topic, 3, st.dead_letter_topic, "dead-letter topic", "dlq", { link: "#/side/dead_letters" });
      // The edge skips column 2: it passes through a dummy node there (a gap between the
      // tables), so that it never runs under a table's box.
      const via = "via:" + st.name + ">" + st.dead_letter_topic;
      node(via, 2, "", "", "dummy", { dummy: true, first: true });
      edge("stream:" + st.name, via, "dlq-in", null);
      edge(via, "side:" + st.dead_letter_topic, "dlq", (m) => {
        const r = m.rate("sluice_dead_letters_total", { topic: st.topic });
        return r !== null ? r : m.rate("sluice_dead_letters_total", { topic: st.dead_letter_topic });
      });
    }
    for (const w of p.windows || []) {
      if (!w.late_topic) continue;
      node("side:" + w.late_topic, 3, w.late_topic, "late-events topic", "late", { link: "#/side/late" });
      edge("window:" + w.name, "side:" + w.late_topic, "late", (m) => m.rate("sluice_late_events_total", { window: w.name }));
    }
    for (const a of p.alerts || []) {
      if (!a.topic) continue;
      node("side:" + a.topic, 3, a.topic, "alert topic", "alerts", { link: "#/side/alerts" });
      edge("alert:" + a.name, "side:" + a.topic, "alert", (m) => m.rate("sluice_alerts_total", { rule: a.name }));
    }
    return { nodes, edges };
  }

  /** Positions: each column stacked and centred; columns 2 and 3 ordered by their sources. */
  function layout(g) {
    const cols = [[], [], [], []];
    for (const n of g.nodes.values()) { n.h = n.dummy ? DUMMY_H : NODE_H; cols[n.col].push(n); }
    const parentsOf = (n) => g.edges.filter((e) => e.to === n.id).map((e) => g.nodes.get(e.from));
    const colHeight = (col) => col.reduce((a, n) => a + n.h + ROW_GAP, 0);
    const tallest = Math.max(NODE_H + ROW_GAP, ...cols.map(colHeight));
    cols.forEach((col, ci) => {
      if (ci >= 2) {
        const key = (n) => {
          const ps = parentsOf(n);
          return ps.length ? ps.reduce((a, p) => a + p.y + p.h / 2, 0) / ps.length : 0;
        };
        col.sort((a, b) => key(a) - key(b) || (b.first ? 1 : 0) - (a.first ? 1 : 0) || a.order - b.order);
      }
      let y = 40 + (tallest - colHeight(col)) / 2;
      for (const n of col) { n.x = COL_X[ci]; n.y = y; y += n.h + ROW_GAP; }
    });
    return tallest + 40;
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function drawGraph(svg, g, metrics) {
    const height = layout(g);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    svg.setAttribute("height", String(height));
    fill(svg);
    COL_TITLES.forEach((t, i) => svg.appendChild(s("text", { x: COL_X[i], y: 18, class: "col-title" }, t)));

    const edgeLayer = s("g", { class: "edges" }), labelLayer = s("g", { class: "edge-labels" });
    for (const e of g.edges) {
      const a = g.nodes.get(e.from), b = g.nodes.get(e.to);
      const x1 = a.x + NODE_W, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
      const mx = (x1 + x2) / 2;
      // An edge into a dummy shows the rate of the edge out of it.
      const out = b.dummy ? g.edges.find((o) => o.from === b.id) : e;
      const rate = out.rate ? out.rate(metrics) : null;
      const active = rate !== null && rate > 0;
      const width = active ? 1.5 + Math.min(4, Math.log10(1 + rate)) : 1.2;
      const cls = `edge edge-${out.kind}${active ? " active" : ""}`;
      let d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      if (b.dummy) d += ` L${x2 + NODE_W},${y2}`; // straight through column 2
      edgeLayer.appendChild(s("path", { d, class: cls, "stroke-width": width.toFixed(2),
        "marker-end": b.dummy ? null : "url(#arrow)" }));
      if (!e.rate) continue;
      // Label in the gap just before the target column, where no node can sit: find the point
      // of the curve at that x by bisection (x(t) grows with t).
      const lx = x2 - 45;
      const bez = (t, p0, p1, p2, p3) => ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3;
      let lo = 0, hi = 1;
      for (let i = 0; i < 30; i++) { const m = (lo + hi) / 2; if (bez(m, x1, mx, mx, x2) < lx) lo = m; else hi = m; }
      const ly = bez(lo, y1, y1, y2, y2);
      const label = s("text", { x: lx, y: ly - 4, class: `edge-label edge-${e.kind}${active ? " active" : ""}`,
        "text-anchor": "middle", dataset: { edge: e.from + ">" + e.to } }, fmtRate(rate));
      labelLayer.appendChild(label);
    }
    svg.appendChild(s("defs", null, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerUnits: "userSpaceOnUse", markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))));
    svg.appendChild(edgeLayer);

    const nodeLayer = s("g", { class: "nodes" });
    for (const n of g.nodes.values()) {
      if (n.dummy) continue;
      const grp = s("g", { class: `node node-${n.kind}${n.link ? " link" : ""}`, transform: `translate(${n.x},${n.y})`,
        dataset: { name: n.name, kind: n.kind } },
      s("title", null, n.name + " (" + n.sub + ")" + (n.title ? "\n" + n.title : "")),
      s("rect", { width: NODE_W, height: NODE_H, rx: 5, ry: 5 }),
      s("text", { x: 10, y: 18, class: "node-name" + (n.name.length > 26 ? " long" : "") }, n.name),
      s("text", { x: 10, y: 35, class: "node-sub" }, shorten(n.sub, 34)));
      if (n.link) grp.addEventListener("click", () => { location.hash = n.link; });
      nodeLayer.appendChild(grp);
    }
    svg.appendChild(nodeLayer);
    svg.appendChild(labelLayer);
  }

  function statusPill(what, id, part, extra) {
    if (!part) return h("div", { id, class: "status unknown" }, what + ": unknown");
    if (part.up) return h("div", { id, class: "status up" }, h("span", { class: "dot" }), what + " up", extra ? " · " + extra : "");
    return downBanner(what, part.error || "unreachable", { id, class: "banner down status" });
  }

  window.SluiceApp.page("pipeline", {
    title: "Pipeline",
    render(ctx) {
      const statusBox = h("div", { class: "status-row" }, spinner("loading the pipeline…"));
      const svg = s("svg", { id: "pipeline-graph", class: "graph", width: "100%", preserveAspectRatio: "xMinYMin meet",
        role: "img", "aria-label": "pipeline graph" });
      const note = h("div", { class: "muted small" });
      const errBox = h("div");
      fill(ctx.root,
        h("div", { class: "page-head" }, h("h1", null, "Pipeline"),
          h("span", { class: "muted" }, "records per second over the last 5 s sample; refreshed every 5 s")),
        statusBox, errBox,
        h("section", { class: "card graph-card" }, svg, note));

      let overview = null, metrics = new Metrics(null), metricsErr = null;
      ctx.poll(async () => {
        const [ov, m] = await Promise.allSettled([api("overview"), api("metrics")]);
        if (!ctx.alive()) return;
        fill(errBox);
        if (ov.status === "fulfilled") overview = ov.value;
        else errBox.appendChild(errorBox({ kind: ov.reason.kind, message: "overview: " + ov.reason.message }));
        if (m.status === "fulfilled") { metrics = new Metrics(m.value); metricsErr = null; }
        else metricsErr = m.reason;
        if (!overview) { fill(statusBox); return; }

        const msrc = overview.metrics || {};
        const mPart = metricsErr ? { up: false, error: metricsErr.message }
          : (metrics.raw.up === false ? { up: false, error: metrics.raw.error } : msrc);
        fill(statusBox,
          statusPill("Kafka", "kafka-status", overview.kafka, overview.kafka && overview.kafka.brokers),
          statusPill("metrics", "metrics-status", mPart, (msrc.sources || []).join(", ")));
        drawGraph(svg, buildGraph(overview.pipeline || {}), metrics);
        const lt = metrics.lastTime();
        fill(note, lt ? "last metrics sample " + fmtTime(lt * 1000) : "no metrics samples yet",
          " · click a table or side topic to open it");
      });
    },
  });
})();
