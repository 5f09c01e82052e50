"""Window state against keys and event rate (bench/run.py --only window-state).

`sluice load` (no broker) runs one 10-second tumbling window per device with count/avg/max
and 5 s of allowed lateness over 30 s of event time, for several numbers of devices (keys) and
event rates (events per second of event time), each under /usr/bin/time for its peak RSS.
Every case reads the same number of events per run except the rate pair, so
  - bytes per open key = (peak RSS at the most keys − at the fewest) ÷ (their difference in
    keys per window), at one rate: at most two windows are open at once (a window stays open
    for the lateness after the next one starts), so this overstates the cost per (window, key)
    group by up to 2×;
  - the rate pair (the same keys at 20,000 and 100,000 events/s) shows whether state grows
    with events.
Keys per window are read back from the window table with DuckDB. BENCH_BASELINE_BIN=path runs
every case with that binary too, alternating (a build that keeps the rows of open windows).
"""

import os
import shutil
import statistics
import subprocess
import sys

from common import CACHE, ROOT, SCHEMA, sluice_bin, timed

SPAN_S = 30
# name, devices, events per second of event time
CASES = [
    ("10k keys", 10_000, 100_000),
    ("100k keys", 100_000, 100_000),
    ("1M keys", 1_000_000, 100_000),
    ("100k keys, 20k/s", 100_000, 20_000),
]
SMOKE_CASES = [("1k keys", 1_000, 2_000), ("10k keys", 10_000, 2_000)]

PIPELINE = """
[kafka]
group = "unused"

[[streams]]
name = "sensor_events"
topic = "unused"
schema = "schemas/sensor_event.schema.json"
event_time = "ts"
key = "device_id"

[[windows]]
name = "device_10s"
from = "sensor_events"
group_by = ["device_id"]
tumble = "10s"
allowed_lateness = "5s"
aggregates = {{ n = "count(*)", avg_temp = "avg(temperature_c)", max_vib = "max(vibration_g)" }}
uri = "{windows}"

# A pipeline needs a table: this one lands nothing, so peak RSS is the window's.
[[tables]]
name = "none"
from = "sensor_events"
filter = "false"
uri = "{windows}-none"
"""


def events_file(devices, rate):
    """The cached NDJSON of SPAN_S seconds at `rate` over `devices`, in event-time order."""
    events = rate * SPAN_S
    path = CACHE / "bench" / f"window-state-{devices}-{rate}.ndjson"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "bench/gen_sensor.py"), "--events",
                        str(events), "--devices", str(devices), "--hours", str(SPAN_S / 3600),
                        "--out-of-order", "0", "--late", "0", "--out", str(path)], check=True)
    return path, events


def keys_per_window(table):
    """The most rows (keys) any window of the window table at `table` has."""
    import duckdb
    return duckdb.sql(f"SELECT max(c) FROM (SELECT window_start, count(*) AS c FROM "
                      f"read_parquet('{table}/**/*.parquet') GROUP BY 1)").fetchall()[0][0]


def load_once(binary, data, dir_, env):
    """Peak RSS (MiB) of one `sluice load` and the most keys in one window."""
    (dir_ / "schemas").mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA, dir_ / "schemas/sensor_event.schema.json")
    table = dir_ / "lake/device_10s"
    (dir_ / "pipeline.toml").write_text(PIPELINE.format(windows=table))
    _, rss, _, _, _ = timed([binary, "load", "--pipeline", str(dir_ / "pipeline.toml"), str(data)],
                         env)
    keys = keys_per_window(table)
    shutil.rmtree(dir_)
    return rss, keys


def window_state(runs, small, work, env):
    binaries = {"sluice": sluice_bin()}
    if os.environ.get("BENCH_BASELINE_BIN"):
        binaries["baseline"] = os.environ["BENCH_BASELINE_BIN"]
    rows = []
    for name, devices, rate in SMOKE_CASES if small else CASES:
        data, events = events_file(devices, rate)
        measured = {tag: [] for tag in binaries}
        keys = None
        for run in range(runs):
            order = list(binaries) if run % 2 == 0 else list(binaries)[::-1]
            for tag in order:
                rss, keys = load_once(binaries[tag], data, work / f"window-state-{tag}", env)
                measured[tag].append(rss)
                print(f"  window-state {name} run {run + 1}: {tag} {rss:.0f} MiB", file=sys.stderr)
        rows.append({"name": name, "devices": devices, "rate": rate, "events": events,
                     "keys_per_window": keys,
                     **{f"{tag}_rss_mib": statistics.median(v) for tag, v in measured.items()}})
    return {"runs": runs, "cases": rows, "tags": list(binaries)}


def print_window_state(result):
    tags = result["tags"]
    print("\n| window state | events | keys per window | " +
          " | ".join(f"peak RSS ({t})" for t in tags) + " |")
    print("|---|---:|---:|" + "---:|" * len(tags))
    for case in result["cases"]:
        print(f"| {case['name']} ({case['rate']:,} events/s) | {case['events']:,} | "
              f"{case['keys_per_window']:,} | " +
              " | ".join(f"{case[f'{t}_rss_mib']:.0f} MiB" for t in tags) + " |")
    same_rate = [c for c in result["cases"] if c["rate"] == result["cases"][0]["rate"]]
    fewest, most = same_rate[0], same_rate[-1]
    for tag in tags:
        grown = (most[f"{tag}_rss_mib"] - fewest[f"{tag}_rss_mib"]) * 1024 * 1024
        per_key = grown / (most["keys_per_window"] - fewest["keys_per_window"])
        print(f"\n{tag}: peak RSS grows by {per_key:,.0f} bytes per key in a window "
              f"({fewest['name']} → {most['name']}, at most two windows open)")
    pair = [c for c in result["cases"] if c["devices"] == 100_000]
    if len(pair) == 2:
        for tag in tags:
            fast, slow = pair
            print(f"{tag}: at 100k keys, {fast['rate']:,} events/s holds "
                  f"{fast[f'{tag}_rss_mib'] - slow[f'{tag}_rss_mib']:+.0f} MiB of peak RSS "
                  f"against {slow['rate']:,} events/s")
