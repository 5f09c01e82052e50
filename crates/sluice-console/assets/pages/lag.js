// Lag & freshness page: per Kafka partition, consumer lag and event-time freshness over the
// sampled minutes (uPlot); per table its last commit, files, bytes and freshness; per window
// its watermark. Polls /api/metrics and /api/tables every 5 s while visible.
"use strict";

(function () {
  const { h, fill, spinner, downBanner, errorBox, dataTable, api, Metrics, makeChart,
    fmtNum, fmtBytes, fmtDur, fmtRate, timeEl } = window.SluiceApp;

  const partKey = (sr) => [sr.labels.topic || "", Number(sr.labels.partition || 0)];

  /** The partition series of one metric, sorted by topic then partition number. */
  function partitionSeries(m, name) {
    return m.all(name).slice().sort((a, b) => {
      const [ta, pa] = partKey(a), [tb, pb] = partKey(b);
      return ta < tb ? -1 : ta > tb ? 1 : pa - pb;
    }).map((sr) => ({ label: `${sr.labels.topic || "?"}/${sr.labels.partition || "?"}`, values: sr.values, labels: sr.labels }));
  }

  /** Draws (or updates) one chart; recreates it when the set of series changes. */
  function updateChart(ctx, key, el, m, name, yFmt, yLabel) {
    const series = partitionSeries(m, name);
    if (!series.length) {
      ctx.dropChart(key);
      fill(el, h("div", { class: "placeholder" }, "no " + name + " samples yet"));
      return;
    }
    const sig = series.map((sr) => sr.label).join("|");
    const u = ctx.chart(key);
    const data = [m.times].concat(series.map((sr) => sr.values));
    if (u && el.dataset.sig === sig) {
      u.setData(data);
      return;
    }
    fill(el);
    el.dataset.sig = sig;
    ctx.setChart(key, makeChart(el, { x: m.times, series, height: 240, yFmt, yLabel }), el);
  }

  /** A watermark metric may be a Unix time (seconds) or an age in seconds: show both sensibly. */
  function watermarkCells(v, sampleAt) {
    if (v === null) return ["–", "–"];
    if (v > 1e9) return [timeEl(v * 1000), fmtDur((sampleAt || Date.now() / 1000) - v)];
    return ["–", fmtDur(v)];
  }

  window.SluiceApp.page("lag", {
    title: "Lag & freshness",
    render(ctx) {
      const status = h("div");
      const lagEl = h("div", { id: "lag-chart", class: "chart" }, spinner());
      const freshEl = h("div", { id: "freshness-chart", class: "chart" }, spinner());
      const partsBox = h("div"), tablesBox = h("div", null, spinner("loading the tables…")), windowsBox = h("div");
      fill(ctx.root,
        h("div", { class: "page-head" }, h("h1", null, "Lag & freshness"),
          h("span", { class: "muted" }, "samples every 5 s over the last minutes; drag on a chart to zoom, double-click to reset")),
        status,
        h("div", { class: "grid2" },
          h("section", { class: "card" }, h("h2", null, "Consumer lag per partition (records)"), lagEl),
          h("section", { class: "card" }, h("h2", null, "Event-time freshness per partition"), freshEl)),
        h("div", { class: "grid2" },
          h("section", { class: "card" }, h("h2", null, "Partitions now"), partsBox),
          h("section", { class: "card" }, h("h2", null, "Window watermarks"), windowsBox)),
        h("section", { class: "card" }, h("h2", null, "Tables"), tablesBox));

      ctx.poll(async () => {
        const [mr, tr] = await Promise.allSettled([api("metrics"), api("tables")]);
        if (!ctx.alive()) return;
        fill(status);
        let m = new Metrics(null);
        if (mr.status === "fulfilled") {
          m = new Metrics(mr.value);
          if (mr.value.up === false) status.appendChild(downBanner("metrics", mr.value.error, { id: "metrics-status" }));
        } else {
          status.appendChild(downBanner("metrics", mr.reason.message, { id: "metrics-status" }));
        }
        const at = m.lastTime();

        updateChart(ctx, "lag", lagEl, m, "sluice_consumer_lag", (v) => fmtNum(Math.round(v)));
        updateChart(ctx, "freshness", freshEl, m, "sluice_partition_freshness_seconds", (v) => fmtDur(v));

        // Partitions now: the last value of each series, joined by topic/partition.
        const rows = new Map();
        for (const [name, field] of [["sluice_consumer_lag", "lag"], ["sluice_partition_freshness_seconds", "fresh"]]) {
          for (const sr of partitionSeries(m, name)) {
            if (!rows.has(sr.label)) rows.set(sr.label, { label: sr.label, topic: sr.labels.topic, partition: sr.labels.partition });
            rows.get(sr.label)[field] = window.SluiceApp.lastValue(sr.values);
          }
        }
        fill(partsBox, dataTable([
          { label: "topic", get: (r) => r.topic },
          { label: "partition", cls: "num", get: (r) => r.partition },
          { label: "lag", cls: "num", get: (r) => fmtNum(r.lag) },
          { label: "freshness", cls: "num", get: (r) => fmtDur(r.fresh) },
        ], [...rows.values()], { empty: "no partition samples yet", id: "partitions-now" }));

        const windows = m.all("sluice_window_watermark_seconds").map((sr) => sr.labels.window);
        fill(windowsBox, dataTable([
          { label: "window", get: (w) => w },
          { label: "watermark", get: (w) => watermarkCells(m.last("sluice_window_watermark_seconds", { window: w }), at)[0] },
          { label: "behind", cls: "num", get: (w) => watermarkCells(m.last("sluice_window_watermark_seconds", { window: w }), at)[1] },
          { label: "late events", cls: "num", get: (w) => fmtRate(m.rate("sluice_late_events_total", { window: w })) },
        ], windows, { empty: "no window watermarks", id: "windows-now" }));

        if (tr.status === "rejected") {
          fill(tablesBox, errorBox(tr.reason));
          return;
        }
        const now = Date.now();
        fill(tablesBox, dataTable([
          { label: "table", get: (t) => h("a", { href: "#/tables/" + encodeURIComponent(t.name) }, t.name) },
          { label: "format", get: (t) => t.format },
          { label: "version", cls: "num", get: (t) => fmtNum(t.version) },
          { label: "last commit", get: (t) => (t.last_commit_ms ? timeEl(t.last_commit_ms) : "–") },
          { label: "since commit", cls: "num", get: (t) => {
            const v = m.last("sluice_table_since_last_commit_seconds", { table: t.name });
            return fmtDur(v !== null ? v : t.last_commit_ms ? (now - t.last_commit_ms) / 1000 : null);
          } },
          { label: "files", cls: "num", get: (t) => fmtNum(t.files) },
          { label: "bytes", cls: "num", get: (t) => fmtBytes(t.bytes) },
          { label: "rows", cls: "num", get: (t) => fmtNum(t.rows) },
          { label: "freshness", cls: "num", title: "sluice_table_freshness_seconds",
            get: (t) => fmtDur(m.last("sluice_table_freshness_seconds", { table: t.name })) },
          { label: "landed", cls: "num", get: (t) => fmtRate(m.rate("sluice_rows_landed_total", { table: t.name })) },
          { label: "status", get: (t) => (t.up === false ? h("span", { class: "bad" }, "down: " + (t.error || "")) : h("span", { class: "ok" }, "ok")) },
        ], tr.value || [], { empty: "no tables", id: "lag-tables", rowClass: (t) => (t.up === false ? "down" : null) }));
      });
    },
  });
})();
