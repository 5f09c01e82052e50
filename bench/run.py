#!/usr/bin/env python3
"""The stream benchmarks of BENCHMARKS.md, in one invocation, against private services.

    bench/run.py                 # full: sensor-1M on 8 partitions, and 64 partitions × 48 hours
    bench/run.py --smoke         # tiny sizes, one run: checks that the harness works (CI)

Starts `sluice broker` (tansu, memory storage) on a free port with scripts/services.sh in a
private run directory, writes the workloads with bench/gen_sensor.py (cached under
~/.cache/sluice/bench), produces them with `sluice produce --input`, and then, --runs times,
alternately:
  - raw:    `sluice topics read-speed` — a plain librdkafka consumer reading the topic and
            discarding it (the ceiling);
  - stream: `sluice stream --until-caught-up` with a fresh group and table: consume → decode →
            Delta table on the local disk → committed;
Workloads: "sensor" (1,000,000 events, 8 partitions, one hour of event time), "sensor-job"
(the same events through the sensor job: raw table + a 1-minute window per device + two alert
rules + a dead-letter topic), "sensor-job@console" (the same with the web console served beside
the stream, nobody looking; "sensor-job@plain" is its control: the same job again, named
alike, without the console), "sensor-parquet" (the same events into a plain Parquet table
instead of a Delta table), "sensor-iceberg" (the same events into an Iceberg table registered in
a SQLite catalog, next to "sensor"'s Delta table), "wide" (500,000
events, 64 partitions, event times spread at random over 48 hours: every batch touches every
date/hour partition) under the default 256 MiB memory budget, and "wide@64MiB" (the same
with --memory-budget 64MiB, "wide@16MiB" with 16MiB). `--only NAME` picks workloads.
each under /usr/bin/time for its peak RSS; rates are events ÷ the process's wall time, start-up
included (client creation; for the stream also joining the group and creating the table); the
table's data files are counted after each stream run (the workloads hold one hour of event
time, so that is also files per hour), and its commits with their median duration (the
`took_ms` of each `Committed.` line: the commit's files written and the commit made).
Prints a Markdown table of medians and the ratio stream ÷ raw, measured in the same
invocation; with BENCH_BASELINE_BIN=path, each run also streams with that binary (a row of its
own), for before/after figures from one invocation. Then "files" (bench/contenders.py): the engine alone (`sluice load`, no broker)
against Spark Structured Streaming, DuckDB and Polars on the same NDJSON file (sensor-1M);
"files-10M": the same on sensor-10M (10,000,000 events, 100,000 devices, 3 hours); "latency":
produce→alert p50/p99 at a steady 20,000 events/s; and "gateway" (bench/gateway_load.py): wrk
POSTing NDJSON batches of 500 to `sluice gateway` next to librdkafka's raw produce rate; and
"window-state" (bench/window_state.py): peak RSS of a window per device against keys and event
rate; and "decode" (crates/sluice-core/examples/decode_speed.rs, built beside the binary):
sluice's JSON decoder against its Avro and Protobuf decoders (Confluent wire format) on the same
sensor-1M records, on one thread. The sluice binary is $SLUICE_BIN, else
target/release/sluice under $CARGO_TARGET_DIR.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import contenders
import gateway_load
import window_state
from common import ROOT, free_port, pipeline, sluice_bin, timed, workload


def scenario(name, events, partitions, hours, shuffle, stream_args, runs, env, work):
    sluice = sluice_bin()
    base = name.split("@")[0]
    job = base == "sensor-job"
    table_format = {"sensor-parquet": "parquet", "sensor-iceberg": "iceberg"}.get(base)
    data = workload(f"{'sensor' if job or table_format else base}-{events}", events, hours, shuffle)
    topic = f"bench-{name.replace('@', '-')}-{os.getpid()}"
    for created in [topic] + ([f"{topic}-{kind}" for kind in ("dlq", "late", "alerts")] if job else []):
        subprocess.run([sluice, "topics", "create", created, "--partitions", str(partitions)],
                       env=env, check=True, capture_output=True)
    subprocess.run([sluice, "produce", "--topic", topic, "--input", str(data), "--key", "device_id",
                    "--report", str(work / f"{name}.report.json")],
                   env=env, check=True, capture_output=True)
    raw, stream, before = [], [], []
    baseline = os.environ.get("BENCH_BASELINE_BIN")
    for run in range(runs):
        wall, rss, out, _, _ = timed([sluice, "topics", "read-speed", topic, "--json"], env)
        read = json.loads(out)
        assert read["records"] == events, read
        raw.append((events / wall, rss))
        dir_ = work / f"{name}-run{run}"

        def stream_once(binary, tag):
            # A fresh group and table each time: the whole topic, from its start.
            file = pipeline(dir_, topic, f"bench-{name}-{run}{tag}-{os.getpid()}",
                            dir_ / "lake/sensor_events", job, table_format)
            wall, rss, _, cpu, log = timed([binary, "stream", "--until-caught-up", *stream_args,
                                            "--pipeline", str(file)], env)
            files = sum(1 for _ in (dir_ / "lake/sensor_events").rglob("*.parquet"))
            shutil.rmtree(dir_)
            # Each commit of the raw table logs how long it took, its files' writing included.
            took = [int(ms) for ms in re.findall(
                r'Committed\..*table="?sensor_events"?.*took_ms=(\d+)', log)]
            commit_ms = statistics.median(took) if took else float("nan")
            return events / wall, rss, events / cpu, files, commit_ms, len(took)

        stream.append(stream_once(sluice, ""))
        if baseline:
            before.append(stream_once(baseline, "-before"))
        print(f"  {name} run {run + 1}: raw {raw[-1][0]:,.0f}/s, stream {stream[-1][0]:,.0f}/s, "
              f"stream peak RSS {stream[-1][1]:.0f} MiB", file=sys.stderr)
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    baseline_figures = before and {
        "baseline_per_s": med(before, 0), "baseline_rss_mib": med(before, 1),
        "baseline_per_cpu_s": med(before, 2),
        "baseline_ratio": med([(b[0] / r[0], 0) for b, r in zip(before, raw)], 0),
    }
    return (baseline_figures or {}) | {
        "name": name, "events": events, "partitions": partitions, "hours": hours,
        "bytes": data.stat().st_size, "runs": runs,
        "raw_per_s": med(raw, 0), "raw_rss_mib": med(raw, 1),
        "stream_per_s": med(stream, 0), "stream_rss_mib": med(stream, 1),
        "stream_per_cpu_s": med(stream, 2), "files": med(stream, 3),
        "commit_ms": med(stream, 4), "commits": med(stream, 5),
        "ratio": med([(s[0] / r[0], 0) for s, r in zip(stream, raw)], 0),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument("--only", action="append", help="run only this workload (repeatable)")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    small = args.smoke
    scenarios = [  # name, events, partitions, hours, shuffle, extra `sluice stream` arguments
        ("sensor", 20_000 if small else 1_000_000, 8, 1, False, []),
        ("sensor-job", 20_000 if small else 1_000_000, 8, 1, False, []),
        ("sensor-job@console", 20_000 if small else 1_000_000, 8, 1, False,
         ["--console-listen", "127.0.0.1:0"]),
        ("sensor-job@plain", 20_000 if small else 1_000_000, 8, 1, False, []),
        ("sensor-parquet", 20_000 if small else 1_000_000, 8, 1, False, []),
        ("sensor-iceberg", 20_000 if small else 1_000_000, 8, 1, False, []),
        ("wide", 20_000 if small else 500_000, 64, 48, True, []),
        ("wide@64MiB", 20_000 if small else 500_000, 64, 48, True, ["--memory-budget", "64MiB"]),
        ("wide@16MiB", 20_000 if small else 500_000, 64, 48, True, ["--memory-budget", "16MiB"]),
    ]
    wanted = lambda name: not args.only or name in args.only
    scenarios = [s for s in scenarios if wanted(s[0])]
    work = Path(tempfile.mkdtemp(prefix="sluice-bench."))
    env = dict(os.environ, SLUICE_RUN_DIR=str(work / "services"), SLUICE_BIN=sluice_bin(),
               SLUICE_KAFKA_PORT=str(free_port()), SLUICE_TANSU_STORAGE="memory://tansu/",
               SLUICE_METRICS_LISTEN="127.0.0.1:0")
    services = str(ROOT / "scripts/services.sh")
    subprocess.run(["bash", services, "start", "kafka"], env=env, check=True, capture_output=True)
    env["SLUICE_BROKERS"] = f"127.0.0.1:{env['SLUICE_KAFKA_PORT']}"
    env.pop("SLUICE_LOG", None)
    try:
        results = [scenario(*s, runs, env, work) for s in scenarios]
        files = wanted("files") and contenders.files(20_000 if small else 1_000_000, runs, work,
                                                     env)
        # sensor-10M: ten times the events, a hundred times the devices, over 3 hours.
        files_10m = wanted("files-10M") and contenders.files(
            20_000 if small else 10_000_000, runs, work, env, devices=100_000, hours=3)
        latency = wanted("latency") and contenders.latency(3 if small else 30, work, env)
        gateway = wanted("gateway") and gateway_load.gateway(2 if small else 10, runs, work, env)
        windows = wanted("window-state") and window_state.window_state(runs, small, work, env)
        decode = wanted("decode") and decode_speed(20_000 if small else 1_000_000, runs)
    finally:
        subprocess.run(["bash", services, "stop"], env=env, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    if results:
        print(f"| workload | events | partitions × hours | raw consume (records/s) | sluice stream "
              f"(records/s) | stream ÷ raw | stream records per CPU-second | raw peak RSS "
              f"| stream peak RSS | data files | commits | median commit |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['name']} ({r['bytes'] / r['events']:.0f} B/event) | {r['events']:,} | "
                  f"{r['partitions']} × {r['hours']} | {r['raw_per_s']:,.0f} | {r['stream_per_s']:,.0f} | "
                  f"{r['ratio']:.2f} | {r['stream_per_cpu_s']:,.0f} | {r['raw_rss_mib']:.0f} MiB "
                  f"| {r['stream_rss_mib']:.0f} MiB | {r['files']:.0f} | {r['commits']:.0f} "
                  f"| {r['commit_ms']:.0f} ms |")
            if "baseline_per_s" in r:
                print(f"| {r['name']}, $BENCH_BASELINE_BIN | | | | {r['baseline_per_s']:,.0f} | "
                      f"{r['baseline_ratio']:.2f} | {r['baseline_per_cpu_s']:,.0f} | "
                      f"| {r['baseline_rss_mib']:.0f} MiB | | | |")
    for workload in (files, files_10m):
        if workload:
            print_files(workload)
    if latency:
        print_latency(latency)
    if gateway:
        print_gateway(gateway)
    if windows:
        window_state.print_window_state(windows)
    if decode:
        print_decode(decode)
    print(f"\nmedians of {runs} run(s); {json.dumps([results, files, files_10m, latency, gateway, windows, decode])}",
          file=sys.stderr)


def decode_speed(events, runs):
    """The decode_speed example (built beside the sluice binary) on the sensor workload."""
    example = Path(sluice_bin()).parent / "examples" / "decode_speed"
    if not example.exists():
        sys.exit(f"{example} is missing: cargo build --release -p sluice-core --example decode_speed")
    lines = workload(f"sensor-{events}", events, 1, False)
    schema = ROOT / "examples/schemas/sensor_event.schema.json"
    out = subprocess.run([str(example), str(lines), str(schema), str(events), str(max(runs, 1))],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def print_decode(d):
    print(f"\n| decoding {d['records']:,} sensor records into Arrow rows, one thread "
          f"| bytes/record | seconds | events per CPU-second |")
    print("|---|---:|---:|---:|")
    print(f"| JSON (sluice's decoder) | {d['json_bytes_per_record']:.0f} | {d['json_seconds']:.3f} "
          f"| {d['json_events_per_cpu_s']:,.0f} |")
    print(f"| Avro, Confluent wire format (arrow-avro) | {d['avro_bytes_per_record']:.0f} "
          f"| {d['avro_seconds']:.3f} | {d['avro_events_per_cpu_s']:,.0f} |")
    print(f"| Protobuf, Confluent wire format (ptars-core) | {d['protobuf_bytes_per_record']:.0f} "
          f"| {d['protobuf_seconds']:.3f} | {d['protobuf_events_per_cpu_s']:,.0f} |")
    print(f"\nAvro ÷ JSON: **{d['avro_over_json']:.2f}×**; Protobuf ÷ JSON: "
          f"**{d['protobuf_over_json']:.2f}×** (medians of {d['runs']} runs)")


def print_files(files):
    m = files["median"]
    events = files["events"]
    print(f"\n| {events:,} events, {files['devices']:,} devices, {files['hours']} h, from NDJSON "
          f"({files['bytes'] / events:.0f} B/event) | wall | "
          f"events/s | CPU-s | events per CPU-second | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("sluice load, sensor job (engine alone)", "engine"),
            ("Spark Structured Streaming, sensor job", "spark"),
            ("sluice load, raw table only", "landing"),
            ("DuckDB, NDJSON → zstd Parquet", "duckdb"),
            ("Polars, NDJSON → zstd Parquet", "polars")]
    if "engine-baseline" in m:
        rows += [("sluice load, sensor job, $BENCH_BASELINE_BIN", "engine-baseline"),
                 ("sluice load, raw table only, $BENCH_BASELINE_BIN", "landing-baseline")]
    for label, name in rows:
        r = m[name]
        print(f"| {label} | {r['wall_s']:.2f} s | {events / r['wall_s']:,.0f} | {r['cpu_s']:.2f} | "
              f"{events / r['cpu_s']:,.0f} | {r['rss_mib']:.0f} MiB |")
    print(f"\nsluice vs Spark (job, wall): **{files['engine_vs_spark']:.1f}×**; sluice landing vs "
          f"DuckDB (wall): **{files['landing_vs_duckdb']:.2f}×**, vs Polars: "
          f"**{files['landing_vs_polars']:.2f}×**; engine: "
          f"**{files['engine_per_cpu_s']:,.0f}** events per CPU-second")
    if "engine-baseline" in m:
        print(f"$SLUICE_BIN ÷ $BENCH_BASELINE_BIN (wall): sensor job "
              f"**{m['engine-baseline']['wall_s'] / m['engine']['wall_s']:.2f}×**, raw table "
              f"**{m['landing-baseline']['wall_s'] / m['landing']['wall_s']:.2f}×** (above 1: "
              f"$SLUICE_BIN is faster)")


def print_latency(latency):
    print(f"\nproduce→alert at {latency['rate']:,} events/s for {latency['seconds']} s: "
          f"{latency['alerts']:,} alerts, p50 **{latency.get('p50_ms', float('nan')):.1f} ms**, "
          f"p99 **{latency.get('p99_ms', float('nan')):.1f} ms**, max "
          f"{latency.get('max_ms', float('nan')):.1f} ms; sluice stream peak RSS "
          f"{latency['stream_rss_mib'] or 0:.0f} MiB")
    before = latency.get("baseline")
    if before:
        print(f"the same with $BENCH_BASELINE_BIN ({before['alerts']:,} alerts): p50 "
              f"{before.get('p50_ms', float('nan')):.1f} ms, p99 "
              f"{before.get('p99_ms', float('nan')):.1f} ms; its own part: p50 "
              f"{before['own'].get('p50_ms', float('nan')):.1f} ms, p99 "
              f"{before['own'].get('p99_ms', float('nan')):.1f} ms")
    own = latency.get("own", {})
    print(f"sluice's own part (record received → alert acknowledged, its histogram, "
          f"{own.get('alerts', 0):,} alerts): p50 {own.get('p50_ms', float('nan')):.1f} ms, "
          f"p99 **{own.get('p99_ms', float('nan')):.1f} ms**")
    sent = latency.get("own_to_sent", {})
    print(f"  of which up to the producer (record received → alert handed to the producer, "
          f"{sent.get('alerts', 0):,} alerts): p50 {sent.get('p50_ms', float('nan')):.1f} ms, "
          f"p99 **{sent.get('p99_ms', float('nan')):.1f} ms**")
    hop = latency["broker_hop"]
    print(f"one hop through the broker alone (produce→source topic, every tenth event): "
          f"p50 {hop.get('p50_ms', float('nan')):.1f} ms, p99 "
          f"{hop.get('p99_ms', float('nan')):.1f} ms, max {hop.get('max_ms', float('nan')):.1f} ms")
    relay = latency["relay"]
    print(f"the floor, a librdkafka relay (produce→relay→reader, one event in 64, "
          f"{relay.get('alerts', 0):,} records): p50 {relay.get('p50_ms', float('nan')):.1f} ms, "
          f"p99 **{relay.get('p99_ms', float('nan')):.1f} ms**, max "
          f"{relay.get('max_ms', float('nan')):.1f} ms; sluice's p99 ÷ the relay's: "
          f"**{latency.get('p99_ms', float('nan')) / relay.get('p99_ms', float('nan')):.2f}**")
    relay_own = relay.get("own", {})
    print(f"the relay's own part (produce() → acknowledged, librdkafka's Message.latency(), "
          f"{relay_own.get('records', 0):,} records): p50 "
          f"{relay_own.get('p50_ms', float('nan')):.1f} ms, p99 "
          f"**{relay_own.get('p99_ms', float('nan')):.1f} ms**")


def print_gateway(g):
    print(f"\n| HTTP gateway, NDJSON batches of {g['batch']}, acks=all, {g['connections']} "
          f"connections, {g['seconds']} s | events/s | p50 | p99 | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    print(f"| librdkafka raw produce (confluent-kafka, acks=all, idempotent) | "
          f"{g['raw_produce_per_s']:,.0f} | | | |")
    print(f"| sluice gateway (wrk → HTTP → acks=all) | {g['gateway_per_s']:,.0f} | "
          f"{g['p50_ms']:.1f} ms | {g['p99_ms']:.1f} ms | {g['gateway_rss_mib']:.0f} MiB |")
    print(f"\ngateway ÷ raw produce: **{g['ratio']:.2f}**")


if __name__ == "__main__":
    main()
