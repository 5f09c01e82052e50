"""What the benchmark scripts share: where things are, the workloads, the pipeline files, and
running a contender under /usr/bin/time."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache/sluice"))
SCHEMA = ROOT / "examples/schemas/sensor_event.schema.json"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sluice_bin():
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release/sluice")


def arrived(consumer, timeout):
    """The records that have arrived at a confluent-kafka `consumer`: waits up to `timeout`
    seconds for a first one, then takes only what is ready, as `sluice stream`'s consumer
    does. (`Consumer.consume(n, timeout)` waits for n records or the whole timeout, which
    would add up to that timeout to every latency measured.)"""
    first = consumer.poll(timeout)
    return [] if first is None else [first, *consumer.consume(num_messages=999, timeout=0)]


def timed(cmd, env):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, peak RSS MiB, stdout, CPU
    seconds (user + system), stderr)."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1))
              for kind in ("User", "System"))
    return wall, rss_kib / 1024, proc.stdout, cpu, proc.stderr


def workload(name, events, hours, shuffle, devices=1_000):
    path = CACHE / "bench" / f"{name}.ndjson"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed, so that an interrupted run leaves no partial workload.
        partial = path.with_suffix(".partial")
        args = ["--events", str(events), "--hours", str(hours), "--devices", str(devices),
                "--out", str(partial)]
        if shuffle:
            args.append("--shuffle")
        subprocess.run([sys.executable, str(ROOT / "bench/gen_sensor.py"), *args], check=True)
        partial.rename(path)
    return path


# The sensor job of issue 4: the raw table plus a 1-minute window per device and two alert
# rules (and a dead-letter topic), as examples/sensor.toml runs it.
JOB = """
dead_letter_topic = "{topic}-dlq"

[[windows]]
name = "device_1m"
from = "sensor_events"
group_by = ["device_id"]
tumble = "1m"
allowed_lateness = "30s"
idle_timeout = "10s"
aggregates = {{ n = "count(*)", avg_temp = "avg(temperature_c)", max_vib = "max(vibration_g)" }}
uri = "{windows}"
late_topic = "{topic}-late"

[[alerts]]
name = "overheat"
from = "sensor_events"
when = "temperature_c > 85"
topic = "{topic}-alerts"

[[alerts]]
name = "shaking"
from = "sensor_events"
when = "vibration_g > 0.5"
topic = "{topic}-alerts"
"""


def pipeline(dir_, topic, group, table, job=False, table_format=None):
    """A sensor pipeline writing `table` (Delta, plain files of `table_format`, or Iceberg in a
    SQLite catalog beside the pipeline file), with the sensor job's windows and alerts when
    `job`."""
    catalog = ""
    if table_format == "iceberg":
        catalog = (f'catalog = "bench"\n\n[catalogs.bench]\ntype = "sql"\n'
                   f'uri = "sqlite:///{dir_ / "catalog.db"}"\nwarehouse = "file://{table.parent}"\n')
    (dir_ / "schemas").mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA, dir_ / "schemas/sensor_event.schema.json")
    file = dir_ / "pipeline.toml"
    file.write_text(f"""
[kafka]
group = "{group}"

[[streams]]
name = "sensor_events"
topic = "{topic}"
schema = "schemas/sensor_event.schema.json"
event_time = "ts"
key = "device_id"
{JOB.format(topic=topic, windows=table.parent / "device_1m") if job else ""}
[[tables]]
name = "sensor_events"
from = "sensor_events"
uri = "{table}"
{f'format = "{table_format}"' if table_format else ""}
{catalog}{kafka_options()}""")
    return file


def kafka_options():
    """$BENCH_KAFKA_OPTIONS (a JSON object of librdkafka settings, e.g.
    '{"fetch.wait.max.ms": "10"}') as the pipeline's [kafka.options], for every stream run."""
    options = json.loads(os.environ.get("BENCH_KAFKA_OPTIONS", "{}"))
    lines = "".join(f"{json.dumps(k)} = {json.dumps(str(v))}\n" for k, v in options.items())
    return f"\n[kafka.options]\n{lines}" if options else ""
