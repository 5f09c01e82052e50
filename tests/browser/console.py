"""The console's browser test: drives the web console of a running `sluice up` (or
`sluice console`) with Debian's headless chromium through chromedriver and Selenium.

  console.py --url http://127.0.0.1:PORT/ --out DIR --cutoff ISO_TIMESTAMP
             --dead-letter-reason TEXT [--key KEY] [--sql-timeout-query SQL] [--verify]
  console.py --url … --out DIR --down [--key KEY]

Steps, each with an explicit wait:
  (a) #/pipeline: the graph (svg#pipeline-graph) shows sensor_events, sensor_alerts and
      sensor_events_dlq as <text> nodes;
  (b) #/lag: window.sluiceConsole.charts.lag has at least 3 samples and a non-null lag;
  (c) #/sql: `select count(*) as n from sensor_events where ts < TIMESTAMP '<cutoff>'`, n read
      from the grid's first cell;
  (d) a per-minute count: a uPlot chart (charts.sql) with points and a <canvas>;
  (e) DELETE and CREATE TABLE AS: the error box's kind and text;
  (f) a missing table: the error text; (--sql-timeout-query: that query's error too);
  (g) #/side/dead_letters: Refresh every 5 s until a record's reason contains
      --dead-letter-reason;
  (h) #/tables, then the first table's detail (--verify: also press Verify).

With --down it checks a console whose brokers are down instead: #/pipeline says Kafka is down
(down-pipeline.png), #/tables lists a table that cannot be read with its error
(down-tables.png), and SQL still counts sensor_events (findings kafka_status, tables,
tables_down, sql_count).

With --key the key is typed into the console's key prompt first. Screenshots (pipeline.png,
lag.png, sql.png, sql-chart.png, dead-letters.png, tables.png, table-detail.png) and
chromedriver.log go to --out. Progress goes to stderr; stdout gets ONE JSON line of findings:

  {"pipeline_names": [...], "kafka_status": "...", "lag_points": N, "sql_count": N,
   "sql_chart_points": N, "delete_error": {"kind", "text"}, "create_error": {...},
   "missing_table_error": "...", "timeout_error": {...} (with --sql-timeout-query),
   "dead_letter_reason": "...", "tables": [...], "tables_down": {name: error},
   "table_detail": "...", "verify": {...} (with --verify),
   "js_errors": [...], "api_errors": [...]}

js_errors holds the browser console's SEVERE entries (JavaScript errors, CSP violations,
failed asset loads); api_errors the failed /api/ responses Chrome also logs (an expected 400
for a refused query lands there). On a failed wait it saves failure.png, failure.html and
failure-console.json into --out, prints what it was waiting for on stderr and exits 1.

Uses chromedriver at $CHROMEDRIVER or /usr/bin/chromedriver and chromium at $CHROMIUM or
/usr/bin/chromium (Selenium Manager never runs), with a temporary --user-data-dir.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REFRESH_EVERY_S = 5


class Failed(Exception):
    pass


def log(msg):
    print(f"console.py: {msg}", file=sys.stderr, flush=True)


class Console:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.base = args.url.split("#")[0]
        self.step = "start"
        self.js_errors = []
        self.api_errors = []
        driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
        chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for what, path in (("chromedriver", driver_path), ("chromium", chromium)):
            if not os.path.exists(path):
                raise SystemExit(f"console.py: {what} not found at {path} (install chromium and chromium-driver, "
                                 f"or set ${what.upper()})")
        self.profile = tempfile.mkdtemp(prefix="sluice-console-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1400,900", f"--user-data-dir={self.profile}"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # A driver path in Service: Selenium Manager is skipped (it would try to download one).
        service = Service(driver_path, log_output=os.path.join(self.out, "chromedriver.log"))
        self.d = webdriver.Chrome(service=service, options=opts)
        self.d.set_page_load_timeout(30)
        self.d.set_script_timeout(30)

    def close(self):
        try:
            self.d.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------------

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def wait(self, seconds, what, cond):
        """Waits for cond(driver) to be truthy; raises Failed naming `what` on timeout."""
        try:
            return WebDriverWait(self.d, seconds, poll_frequency=0.25).until(cond)
        except TimeoutException:
            raise Failed(f"step {self.step}: waited {seconds} s for {what}; page state: {self.state()}") from None

    def state(self):
        try:
            return json.dumps(self.js("""
              const c = window.sluiceConsole || {};
              const banners = [...document.querySelectorAll('.banner')].map(b => b.textContent.trim()).slice(0, 5);
              const lag = c.charts && c.charts.lag;
              return {page: c.page, charts: Object.keys(c.charts || {}), lag_points: lag ? lag.data[0].length : null,
                      lastSql: c.lastSql ? JSON.stringify(c.lastSql).slice(0, 300) : null, banners,
                      key_prompt: !!document.getElementById('key-prompt')};"""))
        except WebDriverException as e:
            return f"(unavailable: {e.msg})"

    def drain_log(self):
        try:
            entries = self.d.get_log("browser")
        except WebDriverException:
            return
        for e in entries:
            if e.get("level") != "SEVERE":
                continue
            msg = e.get("message", "")
            if e.get("source") == "network" and "/api/" in msg:
                self.api_errors.append(msg)
            else:
                self.js_errors.append(f"{e.get('source')}: {msg}")

    def goto(self, route):
        """Hash navigation inside the app (no reload, so the stored key stays)."""
        self.js("location.hash = arguments[0]", route)
        page = route.lstrip("#/")
        self.wait(10, f"the router to show {route}", lambda d: self.js("return window.sluiceConsole && window.sluiceConsole.page") == page)

    def click(self, element):
        self.js("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.out, name))

    def text_of(self, css):
        els = self.d.find_elements(By.CSS_SELECTOR, css)
        return els[0].text if els else None

    # ---- steps --------------------------------------------------------------------------------

    def open(self):
        self.step = "open"
        self.d.get(self.base + "#/pipeline")
        self.wait(20, "the app to start (window.sluiceConsole)", lambda d: self.js("return !!window.sluiceConsole"))
        if self.args.key:
            self.step = "key"
            inp = self.wait(30, "the key prompt (#key-input)", lambda d: d.find_elements(By.ID, "key-input"))[0]
            inp.send_keys(self.args.key)
            self.d.find_element(By.ID, "key-submit").click()
            self.wait(30, "the key prompt to close after the key was entered",
                      lambda d: not d.find_elements(By.ID, "key-prompt"))
            log("entered the key into the prompt")

    def pipeline(self, findings):
        self.step = "(a) pipeline"
        want = ["sensor_events", "sensor_alerts", "sensor_events_dlq"]
        texts = lambda: self.js("const g = document.getElementById('pipeline-graph');"
                                "return g ? [...g.querySelectorAll('text')].map(t => t.textContent) : [];")
        self.wait(60, f"the pipeline graph to show {want}", lambda d: all(w in texts() for w in want))
        names = self.js("return [...document.querySelectorAll('#pipeline-graph .node')].map(n => n.dataset.name)") or []
        findings["pipeline_names"] = list(dict.fromkeys(names)) or sorted(set(texts()))
        rates = lambda: self.js("return Object.fromEntries([...document.querySelectorAll("
                                "'#pipeline-graph text.edge-label')].map(t => [t.dataset.edge, t.textContent]))") or {}
        live = lambda: {e: r for e, r in rates().items() if any(c.isdigit() for c in r)}
        self.wait(60, "a live rate on the topic -> stream edge",
                  lambda d: any(e.startswith("topic:") for e in live()))
        findings["edge_rates"] = live()
        findings["kafka_status"] = self.text_of("#kafka-status")
        log(f"pipeline shows {findings['pipeline_names']}; Kafka: {findings['kafka_status']}")
        self.shot("pipeline.png")

    def lag(self, findings):
        self.step = "(b) lag"
        self.goto("#/lag")
        probe = """const u = window.sluiceConsole.charts.lag;
                   if (!u || !u.data || !u.data[0]) return null;
                   return {points: u.data[0].length,
                           value: u.data.slice(1).some(s => (s || []).some(v => v !== null && v !== undefined))};"""
        self.wait(90, "charts.lag with >= 3 samples and a non-null lag",
                  lambda d: (lambda r: r and r["points"] >= 3 and r["value"])(self.js(probe)))
        findings["lag_points"] = self.js(probe)["points"]
        log(f"lag chart has {findings['lag_points']} samples")
        self.shot("lag.png")

    def run_sql(self, sql, timeout=120):
        """Types sql into the editor, runs it; returns {"result"} or {"kind", "text"}."""
        before = self.js("return window.sluiceConsole.sqlSeq")
        editor = self.d.find_element(By.ID, "sql-editor")
        editor.clear()
        editor.send_keys(sql)
        self.click(self.d.find_element(By.ID, "sql-run"))
        self.wait(timeout, f"the answer to {sql!r}", lambda d: self.js("return window.sluiceConsole.sqlSeq") > before)
        err = self.d.find_elements(By.CSS_SELECTOR, "#sql-error:not([hidden])")
        if err:
            text = self.js("const e = document.querySelector('#sql-error .err-text'); return e ? e.textContent : null")
            return {"kind": err[0].get_attribute("data-kind"), "text": text if text is not None else err[0].text}
        self.wait(10, "the result grid (#sql-grid)", lambda d: d.find_elements(By.ID, "sql-grid"))
        return {"result": self.js("return window.sluiceConsole.lastSql")}

    def sql(self, findings):
        self.step = "(c) sql count"
        self.goto("#/sql")
        self.wait(10, "the SQL editor", lambda d: d.find_elements(By.ID, "sql-editor"))
        sql = f"select count(*) as n from sensor_events where ts < TIMESTAMP '{self.args.cutoff}'"
        r = self.run_sql(sql)
        if "result" not in r:
            raise Failed(f"step {self.step}: {sql!r} failed: {r['kind']}: {r['text']}")
        cell = self.d.find_element(By.CSS_SELECTOR, "#sql-grid tbody tr td").text.strip()
        try:
            findings["sql_count"] = int(cell.replace(",", ""))
        except ValueError:
            raise Failed(f"step {self.step}: the first cell is {cell!r}, not a count") from None
        log(f"count before {self.args.cutoff}: {findings['sql_count']}")
        self.shot("sql.png")

        self.step = "(d) sql chart"
        sql = "select date_trunc('minute', ts) as m, count(*) as n from sensor_events group by 1 order by 1"
        r = self.run_sql(sql)
        if "result" not in r:
            raise Failed(f"step {self.step}: {sql!r} failed: {r['kind']}: {r['text']}")
        self.wait(10, "charts.sql with points and a <canvas> in #sql-chart", lambda d: self.js(
            "const u = window.sluiceConsole.charts.sql;"
            "return !!(u && u.data[0].length >= 1 && document.querySelector('#sql-chart canvas'));"))
        findings["sql_chart_points"] = self.js("return window.sluiceConsole.charts.sql.data[0].length")
        self.js("document.getElementById('sql-chart').scrollIntoView({block: 'center'})")
        self.shot("sql-chart.png")
        log(f"per-minute chart has {findings['sql_chart_points']} points")

        self.step = "(e) refused statements"
        for key, stmt in (("delete_error", "DELETE FROM sensor_events"), ("create_error", "CREATE TABLE x AS SELECT 1")):
            r = self.run_sql(stmt)
            findings[key] = {"kind": r.get("kind"), "text": r.get("text")}
            log(f"{stmt}: {findings[key]}")

        self.step = "(f) missing table"
        r = self.run_sql("select * from no_such_table")
        findings["missing_table_error"] = r.get("text")
        log(f"missing table: {r}")

        if self.args.sql_timeout_query:
            self.step = "(f) timeout"
            r = self.run_sql(self.args.sql_timeout_query, timeout=300)
            findings["timeout_error"] = {"kind": r.get("kind"), "text": r.get("text")}
            log(f"timeout query: {findings['timeout_error']}")

    def dead_letters(self, findings):
        self.step = "(g) dead letters"
        self.goto("#/side/dead_letters")
        wanted = self.args.dead_letter_reason
        find = """const want = arguments[0];
                  for (const tr of document.querySelectorAll('#side-table tr.side-record')) {
                    const td = tr.querySelector('td.reason');
                    if (td && td.textContent.includes(want)) return td.textContent;
                  }
                  return null;"""
        deadline = time.monotonic() + 90
        reason = None
        while reason is None:
            try:
                reason = WebDriverWait(self.d, REFRESH_EVERY_S, poll_frequency=0.25).until(lambda d: self.js(find, wanted))
            except TimeoutException:
                if time.monotonic() > deadline:
                    rows = self.js("return [...document.querySelectorAll('#side-table td.reason')].slice(0, 5).map(t => t.textContent)")
                    raise Failed(f"step {self.step}: no dead letter whose reason contains {wanted!r} after 90 s; "
                                 f"first reasons shown: {rows}; page state: {self.state()}") from None
                refresh = self.d.find_elements(By.ID, "side-refresh")
                if refresh and refresh[0].is_enabled():
                    self.click(refresh[0])
        findings["dead_letter_reason"] = reason
        log(f"dead letter: {reason}")
        self.shot("dead-letters.png")

    def tables(self, findings):
        self.step = "(h) tables"
        self.goto("#/tables")
        self.wait(60, "the tables list (#tables-list)", lambda d: d.find_elements(By.ID, "tables-list"))
        rows = self.js("return [...document.querySelectorAll('#tables-list tr.table-row')].map(tr => "
                       "({name: tr.dataset.name, error: tr.dataset.error === undefined ? null : tr.dataset.error}))")
        findings["tables"] = [r["name"] for r in rows]
        findings["tables_down"] = {r["name"]: r["error"] for r in rows if r["error"] is not None}
        log(f"tables: {findings['tables']} (down: {findings['tables_down']})")
        self.shot("tables.png")
        links = self.d.find_elements(By.CSS_SELECTOR, "#tables-list a.table-link")
        if not links:
            raise Failed(f"step {self.step}: the tables list has no table")
        name = links[0].text
        self.click(links[0])
        self.wait(60, f"the detail of {name} (#verify-button or an error)", lambda d:
                  d.find_elements(By.ID, "verify-button") or d.find_elements(By.CSS_SELECTOR, "#main .banner.down"))
        findings["table_detail"] = name
        err = self.text_of("#main .banner.down")
        if err:
            findings["table_detail_error"] = err
        self.shot("table-detail.png")
        if self.args.verify and not err:
            self.step = "(h) verify"
            self.click(self.d.find_element(By.ID, "verify-button"))
            self.wait(180, "the verdict (#verify-result)", lambda d:
                      d.find_element(By.ID, "verify-result").get_attribute("data-state") in ("clean", "dirty", "error"))
            box = self.d.find_element(By.ID, "verify-result")
            findings["verify"] = {"state": box.get_attribute("data-state"), "text": box.text}
            log(f"verify {name}: {box.get_attribute('data-state')}")

    def down(self, findings):
        """--down: a console whose brokers are down and one of whose tables cannot be read."""
        self.step = "(down) pipeline"
        self.wait(60, "the pipeline graph", lambda d: self.js(
            "const g = document.getElementById('pipeline-graph');"
            "return !!(g && g.querySelector('text'));"))
        self.wait(90, "#kafka-status to say Kafka is down",
                  lambda d: "down" in (self.text_of("#kafka-status") or "").lower())
        findings["kafka_status"] = self.text_of("#kafka-status")
        log(f"Kafka: {findings['kafka_status']}")
        self.shot("down-pipeline.png")
        self.step = "(down) tables"
        self.goto("#/tables")
        rows = lambda: self.js("return [...document.querySelectorAll('#tables-list tr.table-row')].map(tr => "
                               "({name: tr.dataset.name, error: tr.dataset.error === undefined ? null : tr.dataset.error}))") or []
        self.wait(90, "the tables list with a table that is down",
                  lambda d: any(r["error"] for r in rows()))
        findings["tables"] = [r["name"] for r in rows()]
        findings["tables_down"] = {r["name"]: r["error"] for r in rows() if r["error"] is not None}
        self.shot("down-tables.png")
        self.step = "(down) sql"
        self.goto("#/sql")
        self.wait(10, "the SQL editor", lambda d: d.find_elements(By.ID, "sql-editor"))
        r = self.run_sql("select count(*) as n from sensor_events")
        if "result" not in r:
            raise Failed(f"step {self.step}: the count failed: {r['kind']}: {r['text']}")
        cell = self.d.find_element(By.CSS_SELECTOR, "#sql-grid tbody tr td").text.strip()
        findings["sql_count"] = int(cell.replace(",", ""))
        log(f"down: tables {findings['tables_down']}, count {findings['sql_count']}")

    def fail(self, message):
        log(f"FAILED: {message}")
        try:
            self.shot("failure.png")
            with open(os.path.join(self.out, "failure.html"), "w", encoding="utf-8") as f:
                f.write(self.d.page_source)
            self.drain_log()
            with open(os.path.join(self.out, "failure-console.json"), "w", encoding="utf-8") as f:
                json.dump({"js_errors": self.js_errors, "api_errors": self.api_errors}, f, indent=1)
            log(f"saved failure.png, failure.html and failure-console.json in {self.out}")
        except WebDriverException as e:
            log(f"could not save the failure artefacts: {e.msg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the console, e.g. http://127.0.0.1:8090/")
    ap.add_argument("--out", required=True, help="directory for screenshots and logs")
    ap.add_argument("--cutoff", help="ISO timestamp for the count query")
    ap.add_argument("--dead-letter-reason", help="text the planted dead letter's reason contains")
    ap.add_argument("--down", action="store_true",
                    help="check a console whose brokers are down instead (the steps of --down)")
    ap.add_argument("--key", help="the console key, typed into its prompt")
    ap.add_argument("--sql-timeout-query", help="a query the console must cancel (recorded as timeout_error)")
    ap.add_argument("--verify", action="store_true", help="also press Verify on the first table")
    args = ap.parse_args()
    if not args.down and not (args.cutoff and args.dead_letter_reason):
        ap.error("--cutoff and --dead-letter-reason are required (unless --down)")
    os.makedirs(args.out, exist_ok=True)

    c = Console(args)
    findings = {}
    code = 0
    try:
        c.open()
        steps = (c.down,) if args.down else (c.pipeline, c.lag, c.sql, c.dead_letters, c.tables)
        for step in steps:
            step(findings)
            c.drain_log()
    except Failed as e:
        c.fail(str(e))
        code = 1
    except WebDriverException as e:
        c.fail(f"step {c.step}: WebDriver error: {e.msg}")
        code = 1
    finally:
        c.drain_log()
        c.close()
    if code:
        log(f"findings so far: {json.dumps(findings)}")
    findings["js_errors"] = c.js_errors
    findings["api_errors"] = c.api_errors
    if code == 0:
        print(json.dumps(findings), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
