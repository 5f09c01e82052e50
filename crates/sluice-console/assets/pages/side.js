// Dead letters / alerts / late events: the most recent records of the side topics
// (GET /api/side/{kind}), filterable by text, rule (alerts) and partition. Fetched on open and
// with the Refresh button; the server may take 2-4 s (it tails Kafka).
"use strict";

(function () {
  const { h, fill, spinner, downBanner, errorBox, api, fmtNum, fmtBytes, timeEl } = window.SluiceApp;

  const KINDS = [
    { kind: "dead_letters", label: "Dead letters", reason: "error" },
    { kind: "alerts", label: "Alerts", reason: "rule / condition" },
    { kind: "late", label: "Late events", reason: "window" },
  ];

  // Filters survive a refresh and a tab switch.
  const filters = { text: "", rule: "", partition: "" };

  function matches(r, f) {
    if (f.rule && (r.rule || "") !== f.rule) return false;
    if (f.partition !== "" && String(r.partition) !== f.partition) return false;
    if (!f.text) return true;
    const needle = f.text.toLowerCase();
    return [r.reason, r.rule, r.payload, r.key, r.topic].some((v) => v && String(v).toLowerCase().includes(needle));
  }

  function select(id, label, values, current, onChange) {
    const sel = h("select", { id, class: "filter" }, h("option", { value: "" }, "all " + label),
      values.map((v) => h("option", { value: String(v), selected: String(v) === current ? "selected" : null }, String(v))));
    sel.value = values.map(String).includes(current) ? current : "";
    sel.addEventListener("change", () => onChange(sel.value));
    return sel;
  }

  function recordRows(r, showRule) {
    const payload = r.payload || "";
    const row = h("tr", { class: "side-record", dataset: { partition: r.partition, offset: r.offset } },
      h("td", { class: "mono" }, r.topic),
      h("td", { class: "num" }, String(r.partition)),
      h("td", { class: "num" }, fmtNum(r.offset)),
      h("td", null, timeEl(r.timestamp_ms)),
      h("td", { class: "mono" }, r.key === null || r.key === undefined ? h("span", { class: "null" }, "–") : r.key),
      showRule ? h("td", { class: "rule" }, r.rule || "–") : null,
      h("td", { class: "reason" }, r.reason || ""),
      h("td", { class: "payload mono", title: "click for the headers and the payload (its first 4 KiB)" },
        payload.length > 160 ? payload.slice(0, 160) + "…" : payload));
    const headers = Object.entries(r.headers || {}).sort(([a], [b]) => (a < b ? -1 : 1));
    const detail = h("tr", { class: "side-detail", hidden: true },
      h("td", { colspan: showRule ? 8 : 7 },
        h("div", { class: "detail-grid" },
          h("div", null, h("h3", null, "headers"), headers.length
            ? h("table", { class: "kv" }, headers.map(([k, v]) => h("tr", null, h("th", { class: "mono" }, k), h("td", { class: "mono" }, v))))
            : h("span", { class: "muted" }, "none")),
          h("div", null, h("h3", null, "payload (" + fmtBytes(new TextEncoder().encode(payload).length) + ")"),
            h("pre", { class: "payload-full" }, payload)))));
    row.addEventListener("click", (ev) => {
      if (window.getSelection && String(window.getSelection())) return; // selecting text, not toggling
      detail.hidden = !detail.hidden;
      row.classList.toggle("open", !detail.hidden);
      ev.preventDefault();
    });
    return [row, detail];
  }

  window.SluiceApp.page("side", {
    title: "Side topics",
    render(ctx) {
      const spec = KINDS.find((k) => k.kind === ctx.arg) || KINDS[0];
      const refresh = h("button", { id: "side-refresh", class: "btn", type: "button" }, "Refresh");
      const text = h("input", { id: "side-filter", type: "search", class: "filter", value: filters.text,
        placeholder: "filter: reason, rule, payload, key…" });
      const ruleBox = h("span"), partBox = h("span");
      const status = h("div", { id: "side-status" });
      const count = h("span", { class: "muted", id: "side-count" });
      const tableBox = h("div", { class: "scroll" });
      fill(ctx.root,
        h("div", { class: "page-head" }, h("h1", null, "Side topics"),
          h("nav", { class: "tabs" }, KINDS.map((k) => h("a", { href: "#/side/" + k.kind, id: "tab-" + k.kind,
            class: k.kind === spec.kind ? "active" : null }, k.label)))),
        h("section", { class: "card" },
          h("div", { class: "toolbar" }, refresh, text, ruleBox, partBox, count),
          status, tableBox));

      let data = null, seq = 0;

      const draw = () => {
        if (!data) return;
        const recs = data.records || [];
        const showRule = spec.kind === "alerts";
        const rules = [...new Set(recs.map((r) => r.rule).filter(Boolean))].sort();
        const parts = [...new Set(recs.map((r) => r.partition))].sort((a, b) => a - b);
        fill(ruleBox, showRule ? select("side-rule", "rules", rules, filters.rule, (v) => { filters.rule = v; draw(); }) : null);
        fill(partBox, select("side-partition", "partitions", parts, filters.partition, (v) => { filters.partition = v; draw(); }));
        const f = { text: filters.text.trim(), rule: showRule ? filters.rule : "", partition: filters.partition };
        const shown = recs.filter((r) => matches(r, f));
        fill(count, `${fmtNum(shown.length)} of ${fmtNum(recs.length)} records` +
          (data.topics && data.topics.length ? " · from " + data.topics.join(", ") : ""));
        const head = ["topic", "partition", "offset", "time", "key"].concat(showRule ? ["rule"] : [], [spec.reason, "payload"]);
        const tbody = h("tbody", null, shown.map((r) => recordRows(r, showRule)));
        if (!shown.length) tbody.appendChild(h("tr", { class: "empty" }, h("td", { colspan: head.length },
          recs.length ? "no record matches the filters" : "no records in " + spec.label.toLowerCase())));
        fill(tableBox, h("table", { class: "data side", id: "side-table", dataset: { kind: spec.kind } },
          h("thead", null, h("tr", null, head.map((c, i) => h("th", { class: i === 1 || i === 2 ? "num" : null }, c)))), tbody));
      };

      const load = async () => {
        const my = ++seq;
        refresh.disabled = true;
        fill(status, spinner("reading the " + spec.label.toLowerCase() + " topics… (this can take a few seconds)"));
        try {
          const res = await api("side/" + spec.kind);
          if (!ctx.alive() || my !== seq) return;
          data = res;
          fill(status, res.up === false ? downBanner("Kafka", res.error || "unreachable", { id: "side-down" }) : null);
          draw();
        } catch (e) {
          if (!ctx.alive() || my !== seq) return;
          fill(status, errorBox(e));
        } finally {
          if (my === seq) refresh.disabled = false;
        }
      };

      text.addEventListener("input", () => { filters.text = text.value; draw(); });
      refresh.addEventListener("click", load);
      load();
    },
  });
})();
