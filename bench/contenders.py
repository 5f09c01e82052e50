"""The contenders of bench/run.py beyond the stream: the engine alone (`sluice load`) against
DuckDB and Spark Structured Streaming on the same NDJSON file, and produce→alert latency.

files(): per run, each under /usr/bin/time (wall time, peak RSS of the largest process, CPU):
  - engine:  `sluice load` running the sensor job (raw Delta table + 1-minute window + two
             alert rules) over the file, no broker: events ÷ CPU-seconds is the rate per core;
  - landing: `sluice load` with the raw table only (decode → Delta, zstd Parquet,
             date/hour partitions) against DuckDB and Polars (a lazy scan sunk to a file)
             each converting the file to one zstd Parquet file;
  - spark:   bench/spark_job.py, the job as Spark Structured Streaming (file source, raw
             Parquet by date/hour + the window with a watermark), JVM start-up included, as
             sluice's start-up is.
  BENCH_BASELINE_BIN=path also runs engine and landing with that sluice binary, alternating
  with $SLUICE_BIN in every run (to compare two builds, such as the release and dist profiles).
latency(): `sluice stream` running the sensor job on a fresh topic while `sluice produce`
sends generated sensor events at a steady 20,000 per second, stamped with the time they are
made; bench/alert_latency.py (librdkafka via confluent-kafka) reads the alert topic and takes
arrival − event time, after a 3 s warm-up. A second reader takes the same on every tenth
event of the source topic: one hop through the broker, the floor under the two hops (and
sluice between them) of an alert. sluice's own part, from its own histogram
`sluice_received_to_acknowledged_seconds{kind="alert"}` (a record's batch leaving the
consumer → Kafka acknowledging its alert) scraped at the end of the warm-up and at the end and
subtracted, as Prometheus's histogram_quantile interpolates it within a bucket (so the
figures are bucket-accurate: 0.5, 1, 2, 4 … ms). BENCH_KAFKA_OPTIONS='{"fetch.wait.max.ms":
"10"}' sets librdkafka settings of every stream run through the pipeline's [kafka.options].
Then the floor:
bench/relay.py, a plain librdkafka consumer→producer with the stream's client settings,
relays one event in 64 (about the alert rate) from a fresh topic fed the same way, read by
the same reader. BENCH_BASELINE_BIN=path runs the stream part with that binary too, first.
"""
import urllib.request

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, free_port, pipeline, sluice_bin, timed, workload

LATENCY_RATE = 20_000
WARM_UP_S = 3
# One event in this many goes through the relay: about the sensor job's alert rate.
RELAY_EVERY = 64


def files(events, runs, work, env, devices=1_000, hours=1):
    sluice = sluice_bin()
    name = f"sensor-{events}" + (f"-{devices}-{hours}h" if (devices, hours) != (1_000, 1) else "")
    data = workload(name, events, hours, False, devices)
    spark_input = work / f"spark-input-{name}"
    spark_input.mkdir(exist_ok=True)
    (spark_input / data.name).symlink_to(data)
    python = sys.executable
    baseline = os.environ.get("BENCH_BASELINE_BIN")
    names = ["engine", "landing", "duckdb", "polars", "spark"] + (
        ["engine-baseline", "landing-baseline"] if baseline else [])
    measured = {name: [] for name in names}
    for run in range(runs):
        dir_ = work / f"files-run{run}"
        # Each load lands into a lake of its own: a second load of the same files into the same
        # lake would find every line landed already.
        job = lambda name: pipeline(dir_ / name, "unused", "unused",
                                    dir_ / name / "lake/sensor_events", True)
        raw = lambda name: pipeline(dir_ / name, "unused", "unused",
                                    dir_ / name / "lake/sensor_events")
        load = lambda binary, file: [binary, "load", "--pipeline", str(file), str(data)]
        contenders = {
            "engine": load(sluice, job("job")),
            "landing": load(sluice, raw("raw")),
            "duckdb": [python, str(ROOT / "bench/duckdb_convert.py"), str(data),
                       str(dir_ / "duckdb.parquet")],
            "polars": [python, str(ROOT / "bench/polars_convert.py"), str(data),
                       str(dir_ / "polars.parquet")],
            # spark-submit execs the JVM, which runs the Python driver as its child: both are
            # measured (pyspark started from python would leave the JVM unmeasured).
            # 8 GiB of heap, as a Spark user would give it on this 24 GiB machine (its state
            # store is RocksDB: bench/spark_job.py).
            "spark": [str(Path(python).parent / "spark-submit"), "--master", "local[*]",
                      "--driver-memory", "8g",
                      str(ROOT / "bench/spark_job.py"), str(spark_input), str(dir_ / "spark")],
        }
        if baseline:
            contenders["engine-baseline"] = load(baseline, job("job-baseline"))
            contenders["landing-baseline"] = load(baseline, raw("raw-baseline"))
        spark_env = dict(env, PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python)
        # Each baseline runs next to its counterpart, first on every other run.
        pairs = [[n, f"{n}-baseline"] for n in ("engine", "landing")]
        order = [n for pair in pairs for n in (pair if run % 2 == 0 else pair[::-1])
                 if n in contenders] + ["duckdb", "polars", "spark"]
        for name, cmd in ((n, contenders[n]) for n in order):
            wall, rss, _, cpu, _ = timed(cmd, spark_env if name == "spark" else env)
            measured[name].append({"wall_s": wall, "rss_mib": rss, "cpu_s": cpu})
            print(f"  files run {run + 1}: {name} {wall:.1f} s, {cpu:.1f} CPU-s, "
                  f"{rss:.0f} MiB", file=sys.stderr)
        shutil.rmtree(dir_)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in measured.items()}
    return {"events": events, "devices": devices, "hours": hours, "bytes": data.stat().st_size,
            "runs": runs, "median": med,
            "engine_per_cpu_s": events / med["engine"]["cpu_s"],
            "landing_vs_duckdb": med["duckdb"]["wall_s"] / med["landing"]["wall_s"],
            "landing_vs_polars": med["polars"]["wall_s"] / med["landing"]["wall_s"],
            "engine_vs_spark": med["spark"]["wall_s"] / med["engine"]["wall_s"]}


def latency(seconds, work, env):
    """produce→alert through `sluice stream` (and through $BENCH_BASELINE_BIN's, run first),
    its own part, one broker hop, and the relay."""
    baseline = os.environ.get("BENCH_BASELINE_BIN")
    before = baseline and stream_latency(baseline, "baseline", seconds, work, env)
    result = stream_latency(sluice_bin(), "sluice", seconds, work, env)
    if before:
        result["baseline"] = before
    result["relay"] = relay_latency(seconds, env)
    return result


def stream_latency(sluice, name, seconds, work, env):
    """One run of the stream binary `sluice` on topics and a lake named after `name`."""
    topic = f"bench-latency-{name}-{os.getpid()}"
    create_topics([topic] + [f"{topic}-{kind}" for kind in ("dlq", "late", "alerts")], env)
    dir_ = work / f"latency-{name}"
    file = pipeline(dir_, topic, topic, dir_ / "lake/sensor_events", True)
    log = open(dir_ / "stream.log", "w")
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    # Its own process group: /usr/bin/time does not pass signals on, so SIGINT goes to both.
    stream = subprocess.Popen(["/usr/bin/time", "-v", sluice, "stream", "--pipeline", str(file),
                               "--metrics-listen", metrics.split("/")[2]],
                              env=env, stderr=log, start_new_session=True)
    readers = []
    try:
        deadline = time.monotonic() + 60
        while "Partitions assigned" not in (dir_ / "stream.log").read_text():
            if time.monotonic() > deadline or stream.poll() is not None:
                sys.exit(f"bench: sluice stream did not join:\n{(dir_ / 'stream.log').read_text()}")
            time.sleep(0.2)
        after_ms = int((time.time() + WARM_UP_S) * 1000)
        readers = [start_reader(f"{topic}-alerts", after_ms, [], env),
                   start_reader(topic, after_ms, ["--field", "ts", "--every", "10"], env)]
        producing = start_producing(topic, seconds, env)
        time.sleep(WARM_UP_S)
        warm = alert_buckets(metrics)
        finish_producing(producing)
        end = alert_buckets(metrics)
    finally:
        outs = stop_readers(readers)
        os.killpg(stream.pid, signal.SIGINT)
        stream.wait(timeout=60)
        log.close()
    result = outs[0]
    result["broker_hop"] = outs[1]
    for histogram in OWN_HISTOGRAMS:
        result[histogram] = own_latency(warm[histogram], end[histogram])
    rss = [line for line in (dir_ / "stream.log").read_text().splitlines()
           if "Maximum resident set size" in line]
    result["stream_rss_mib"] = int(rss[0].split(":")[1]) / 1024 if rss else None
    result["rate"] = LATENCY_RATE
    result["seconds"] = seconds
    return result


def relay_latency(seconds, env):
    """produce→relay→reader at the same rate as the stream's run: bench/relay.py forwards one
    event in RELAY_EVERY (about the alert rate) with the stream's client settings."""
    source = f"bench-relay-{os.getpid()}"
    create_topics([source, f"{source}-out"], env)
    relay = subprocess.Popen([sys.executable, str(ROOT / "bench/relay.py"), env["SLUICE_BROKERS"],
                              source, f"{source}-out", "--every", str(RELAY_EVERY),
                              "--warm-up-s", str(WARM_UP_S)],
                             env=env, stdout=subprocess.PIPE, text=True)
    readers = []
    try:
        if relay.stdout.readline().strip() != "assigned":
            sys.exit("bench: the relay ended before it was assigned partitions")
        after_ms = int((time.time() + WARM_UP_S) * 1000)
        readers = [start_reader(f"{source}-out", after_ms, ["--field", "ts"], env)]
        finish_producing(start_producing(source, seconds, env))
    finally:
        outs = stop_readers(readers)
        relay.send_signal(signal.SIGINT)
        own = json.loads(relay.communicate(timeout=30)[0].strip().splitlines()[-1])
    result = outs[0] if outs else {}
    result["own"] = own
    return result


def create_topics(topics, env):
    for topic in topics:
        subprocess.run([sluice_bin(), "topics", "create", topic, "--partitions", "8"],
                       env=env, check=True, capture_output=True)


def start_reader(topic, after_ms, extra, env):
    """bench/alert_latency.py reading `topic`, counting records stamped after `after_ms`."""
    return subprocess.Popen([sys.executable, str(ROOT / "bench/alert_latency.py"),
                             env["SLUICE_BROKERS"], topic, "--after-ms", str(after_ms), *extra],
                            env=env, stdout=subprocess.PIPE, text=True)


def stop_readers(readers):
    """What each reader measured, once stopped."""
    outs = []
    for reader in readers:
        reader.send_signal(signal.SIGINT)
        outs.append(json.loads(reader.communicate(timeout=30)[0]))
    return outs


def start_producing(topic, seconds, env):
    """`sluice produce` sending sensor events to `topic` at LATENCY_RATE for the warm-up and
    `seconds`."""
    return subprocess.Popen([sluice_bin(), "produce", "--topic", topic, "--generator", "sensor",
                             "--rate", str(LATENCY_RATE), "--count",
                             str(LATENCY_RATE * (seconds + WARM_UP_S))],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_producing(producing):
    """Waits for the producer, then 2 s for the last records to come through."""
    if producing.wait() != 0:
        sys.exit(f"bench: sluice produce failed:\n{producing.stderr.read().decode()}")
    time.sleep(2)


# sluice's own-latency histograms: to the alert's acknowledgement, and to its hand-over to the
# producer (before the produce round trip).
OWN_HISTOGRAMS = {"own": "sluice_received_to_acknowledged_seconds",
                  "own_to_sent": "sluice_received_to_sent_seconds"}


def alert_buckets(metrics_url):
    """The cumulative buckets of each of OWN_HISTOGRAMS with kind="alert":
    {name: [(upper bound in seconds, count)], in order}."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    buckets = {name: [] for name in OWN_HISTOGRAMS}
    for line in text.splitlines():
        for name, family in OWN_HISTOGRAMS.items():
            if line.startswith(f"{family}_bucket{{") and 'kind="alert"' in line:
                labels, count = line.rsplit(" ", 1)
                le = labels.split('le="')[1].split('"')[0]
                buckets[name].append((float(le), float(count)))
    return {name: sorted(b) for name, b in buckets.items()}


def own_latency(before, after):
    """p50 and p99 in ms of what `after` counted beyond `before`, interpolated within a bucket
    as histogram_quantile does."""
    counted = dict(before)
    buckets = [(le, n - counted.get(le, 0.0)) for le, n in after]
    total = buckets[-1][1] if buckets else 0.0
    result = {"alerts": int(total)}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        if total == 0:
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for le, n in buckets:
            if n >= rank:
                if le == float("inf"):
                    result[name] = lower * 1000
                else:
                    result[name] = (lower + (le - lower) * (rank - below) / max(n - below, 1e-9)) * 1000
                break
            lower, below = le, n
    return result
