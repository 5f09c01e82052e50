// Tables page: the list from /api/tables, and one table's schema, partitions, history and the
// Verify button (POST /api/tables/{name}/verify). Fetched on open, not polled.
"use strict";

(function () {
  const { h, fill, spinner, errorBox, dataTable, api, fmtNum, fmtBytes, timeEl } = window.SluiceApp;

  const tableHref = (name) => "#/tables/" + encodeURIComponent(name);

  function renderList(ctx) {
    const box = h("div", null, spinner("loading the tables…"));
    const refresh = h("button", { class: "btn", type: "button", id: "tables-refresh" }, "Refresh");
    fill(ctx.root, h("div", { class: "page-head" }, h("h1", null, "Tables"), refresh), h("section", { class: "card" }, box));
    const load = async () => {
      fill(box, spinner("loading the tables…"));
      let tables;
      try { tables = await api("tables"); } catch (e) {
        if (ctx.alive()) fill(box, errorBox(e));
        return;
      }
      if (!ctx.alive()) return;
      fill(box, dataTable([
        { label: "table", get: (t) => h("a", { href: tableHref(t.name), class: "table-link" }, t.name) },
        { label: "format", get: (t) => t.format },
        { label: "version", cls: "num", get: (t) => fmtNum(t.version) },
        { label: "files", cls: "num", get: (t) => fmtNum(t.files) },
        { label: "bytes", cls: "num", get: (t) => fmtBytes(t.bytes) },
        { label: "rows", cls: "num", get: (t) => fmtNum(t.rows) },
        { label: "last commit", get: (t) => (t.last_commit_ms ? timeEl(t.last_commit_ms) : "–") },
        { label: "schema changes", get: (t) => schemaChanges(t.schema_changes) },
        { label: "uri", cls: "mono small", get: (t) => t.uri },
        { label: "status", get: (t) => (t.up === false
          ? h("span", { class: "bad table-error" }, "down: " + (t.error || "cannot be opened"))
          : h("span", { class: "ok" }, "ok")) },
      ], tables || [], { id: "tables-list", empty: "the pipeline has no tables",
        rowClass: (t) => "table-row" + (t.up === false ? " down" : ""), rowProps: (t) => ({ dataset: t.up === false ? { name: t.name, error: t.error || "" } : { name: t.name } }) }));
    };
    refresh.addEventListener("click", load);
    load();
  }

  function schemaChanges(list) {
    if (!list || !list.length) return "–";
    return h("span", { title: list.map((c) => `${c.at}: added ${(c.added || []).map((f) => `${f.name} (${f.type})`).join(", ")}`).join("\n") },
      list.length + (list.length === 1 ? " change" : " changes"));
  }

  function offsetsText(offsets) {
    if (!offsets || !offsets.length) return "–";
    const text = offsets.map((o) => `${o.topic}/${o.partition}@${o.offset}`).join(", ");
    return h("span", { class: "mono small", title: text }, offsets.length > 4
      ? offsets.slice(0, 4).map((o) => `${o.topic}/${o.partition}@${o.offset}`).join(", ") + ` … (+${offsets.length - 4})`
      : text);
  }

  function renderVerify(box, button, name) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      fill(box, spinner("verifying " + name + "… (this reads the whole table)"));
      box.dataset.state = "running";
      try {
        const v = await api("tables/" + encodeURIComponent(name) + "/verify", { body: {} });
        box.dataset.state = v.clean ? "clean" : "dirty";
        fill(box, h("div", { class: "verdict " + (v.clean ? "ok" : "bad") }, v.clean ? "clean" : "NOT clean"),
          h("pre", { class: "summary" }, v.summary || ""),
          v.report ? h("details", null, h("summary", null, "full report (JSON)"),
            h("pre", { class: "summary" }, JSON.stringify(v.report, null, 2))) : null);
      } catch (e) {
        box.dataset.state = "error";
        fill(box, errorBox(e.kind === "busy" ? { kind: "busy", message: "another verify is running: " + e.message } : e));
      } finally {
        button.disabled = false;
      }
    });
  }

  function renderDetail(ctx, name) {
    const box = h("div", null, spinner("loading " + name + "…"));
    fill(ctx.root, h("div", { class: "page-head" }, h("a", { href: "#/tables", class: "back" }, "← tables"), h("h1", null, name)), box);
    api("tables/" + encodeURIComponent(name)).then((t) => {
      if (!ctx.alive()) return;
      const verifyBtn = h("button", { id: "verify-button", class: "btn primary", type: "button" }, "Verify");
      const verifyBox = h("div", { id: "verify-result", class: "verify-result" },
        h("span", { class: "muted" }, "checks every file, the offsets the commits carried and the row counts"));
      renderVerify(verifyBox, verifyBtn, name);

      const partKeys = [];
      for (const p of t.partitions || []) for (const k of Object.keys(p.values || {})) if (!partKeys.includes(k)) partKeys.push(k);
      const parts = (t.partitions || []).slice().sort((a, b) => {
        const ka = partKeys.map((k) => (a.values || {})[k] || "").join("\u0000");
        const kb = partKeys.map((k) => (b.values || {})[k] || "").join("\u0000");
        return ka < kb ? 1 : ka > kb ? -1 : 0;
      });
      const totals = parts.reduce((acc, p) => ({ files: acc.files + (p.files || 0), bytes: acc.bytes + (p.bytes || 0),
        rows: p.rows === null || acc.rows === null ? null : acc.rows + p.rows }), { files: 0, bytes: 0, rows: 0 });

      fill(box,
        h("section", { class: "card" },
          h("dl", { class: "facts" },
            h("dt", null, "uri"), h("dd", { class: "mono" }, t.uri),
            h("dt", null, "format"), h("dd", null, t.format),
            h("dt", null, "version"), h("dd", null, fmtNum(t.version)),
            h("dt", null, "partitions"), h("dd", null, `${fmtNum(parts.length)} · ${fmtNum(totals.files)} files · ${fmtBytes(totals.bytes)}` +
              (totals.rows !== null ? ` · ${fmtNum(totals.rows)} rows` : ""))),
          t.verifiable === false
            ? h("div", { class: "verify-row muted" }, "a window table: `sluice verify` checks the tables of streams")
            : h("div", { class: "verify-row" }, verifyBtn, verifyBox)),
        h("div", { class: "grid2 detail" },
          h("section", { class: "card" }, h("h2", null, "Schema"), dataTable([
            { label: "column", cls: "mono", get: (c) => c.name },
            { label: "type", cls: "mono", get: (c) => c.type },
            { label: "nullable", get: (c) => (c.nullable ? "yes" : "no") },
          ], t.schema || [], { id: "table-schema", empty: "no columns" })),
          h("section", { class: "card" }, h("h2", null, "Partitions"), h("div", { class: "scroll" }, dataTable(
            partKeys.map((k) => ({ label: k, cls: "mono", get: (p) => (p.values || {})[k] })).concat([
              { label: "rows", cls: "num", get: (p) => fmtNum(p.rows) },
              { label: "files", cls: "num", get: (p) => fmtNum(p.files) },
              { label: "bytes", cls: "num", get: (p) => fmtBytes(p.bytes) },
            ]), parts, { id: "table-partitions", empty: "no data files" })))),
        h("section", { class: "card" }, h("h2", null, "History (newest first)"), h("div", { class: "scroll" }, dataTable([
          { label: "version", cls: "num", get: (c) => fmtNum(c.version) },
          { label: "time", get: (c) => (c.timestamp_ms ? timeEl(c.timestamp_ms) : "–") },
          { label: "operation", get: (c) => c.operation },
          { label: "files +", cls: "num", get: (c) => fmtNum(c.files_added) },
          { label: "files −", cls: "num", get: (c) => fmtNum(c.files_removed) },
          { label: "rows", cls: "num", get: (c) => fmtNum(c.rows_added) },
          { label: "bytes", cls: "num", get: (c) => fmtBytes(c.bytes_added) },
          { label: "offsets carried", get: (c) => offsetsText(c.offsets) },
          { label: "schema change", get: (c) => c.schema_change || "" },
        ], t.history || [], { id: "table-history", empty: "no history" }))));
    }).catch((e) => {
      if (!ctx.alive()) return;
      fill(box, e.kind === "not_found" ? errorBox({ kind: "not found", message: "no table named " + name + " (" + e.message + ")" })
        : e.kind === "down" ? errorBox({ kind: "down", message: name + " cannot be read: " + e.message }) : errorBox(e));
    });
  }

  window.SluiceApp.page("tables", {
    title: "Tables",
    render(ctx) {
      if (ctx.arg) renderDetail(ctx, ctx.arg);
      else renderList(ctx);
    },
  });
})();
