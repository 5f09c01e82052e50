"""The gateway under load (issue 5): NDJSON batches of 500 sensor events POSTed by wrk (a
separate process, keep-alive connections to 127.0.0.1) to `sluice gateway`, which produces them
with acks=all to tansu, next to librdkafka's raw produce rate (confluent-kafka, acks=all,
idempotent) of the same events to the same broker, alternately, --runs times each.

Reports events/s (requests/s × 500) and wrk's latency p50/p99 per request, and checks that the
topic holds at least every acknowledged event (the gateway answers only once Kafka has them).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, free_port, pipeline, sluice_bin, workload

BATCH = 500
CONNECTIONS = 16
KEY = "sk_bench_gateway_key"

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer {key}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""

RAW_PRODUCE = """
import sys, time
from confluent_kafka import Producer
brokers, topic, path = sys.argv[1:4]
lines = [l.rstrip(b"\\n") for l in open(path, "rb")]
p = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True,
              "linger.ms": 5, "queue.buffering.max.messages": 500000})
started = time.monotonic()
for line in lines:
    while True:
        try:
            p.produce(topic, line)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
assert p.flush(120) == 0
print(len(lines) / (time.monotonic() - started))
"""


def gateway(seconds, runs, work, env):
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("bench: wrk is not installed (apt-get install wrk; .ci/run installs it)")
    sluice = sluice_bin()
    dir_ = work / "gateway"
    dir_.mkdir(parents=True, exist_ok=True)
    events = workload("sensor-1000000" if seconds > 5 else "sensor-20000",
                      1_000_000 if seconds > 5 else 20_000, 1, False)
    body = dir_ / "batch.ndjson"
    with open(events) as src, open(body, "w") as out:
        for _, line in zip(range(BATCH), src):
            out.write(line)
    script = dir_ / "post.lua"
    script.write_text(LUA.replace("{key}", KEY).replace("{body}", str(body)))
    raw_events = dir_ / "raw.ndjson"
    raw_count = 200_000 if seconds > 5 else 10_000
    with open(events) as src, open(raw_events, "w") as out:
        for _, line in zip(range(raw_count), src):
            out.write(line)

    raw, served = [], []
    for run in range(runs):
        raw_topic = f"bench-raw-produce-{os.getpid()}-{run}"
        subprocess.run([sluice, "topics", "create", raw_topic, "--partitions", "8"],
                       env=env, check=True, capture_output=True)
        proc = subprocess.run([sys.executable, "-c", RAW_PRODUCE, env["SLUICE_BROKERS"], raw_topic,
                               str(raw_events)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench: raw produce failed:\n{proc.stderr[-3000:]}")
        raw.append(float(proc.stdout))
        served.append(one_gateway_run(sluice, wrk, script, seconds, dir_ / f"run{run}", env))
        print(f"  gateway run {run + 1}: raw produce {raw[-1]:,.0f}/s, gateway "
              f"{served[-1]['events_per_s']:,.0f}/s (p50 {served[-1]['p50_ms']:.1f} ms, "
              f"p99 {served[-1]['p99_ms']:.1f} ms)", file=sys.stderr)
    med = lambda key: statistics.median(r[key] for r in served)
    return {
        "batch": BATCH, "connections": CONNECTIONS, "seconds": seconds, "runs": runs,
        "raw_produce_per_s": statistics.median(raw),
        "gateway_per_s": med("events_per_s"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
        "gateway_rss_mib": med("rss_mib"),
        "ratio": statistics.median(s["events_per_s"] / r for s, r in zip(served, raw)),
    }


def one_gateway_run(sluice, wrk, script, seconds, dir_, env):
    topic = f"bench-gateway-{os.getpid()}-{dir_.name}"
    subprocess.run([sluice, "topics", "create", topic, "--partitions", "8"],
                   env=env, check=True, capture_output=True)
    file = pipeline(dir_, topic, f"bench-gateway-{os.getpid()}", dir_ / "lake/sensor_events")
    sha = hashlib.sha256(KEY.encode()).hexdigest()
    with open(file, "a") as f:
        f.write(f'\n[gateway]\nspool = {{ dir = "{dir_ / "spool"}" }}\n'
                f'[[gateway.keys]]\nname = "bench"\nsha256 = "{sha}"\nstreams = ["*"]\n')
    port = free_port()
    log = open(dir_ / "gateway.log", "w")
    # Its own process group: /usr/bin/time does not pass signals on.
    server = subprocess.Popen(["/usr/bin/time", "-v", sluice, "gateway", "--pipeline", str(file),
                               "--listen", f"127.0.0.1:{port}"],
                              env=env, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in (dir_ / "gateway.log").read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"bench: the gateway did not start:\n{(dir_ / 'gateway.log').read_text()}")
            time.sleep(0.1)
        out = subprocess.run([wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
                              "-s", str(script),
                              f"http://127.0.0.1:{port}/v1/streams/sensor_events/events"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.killpg(server.pid, signal.SIGINT)  # GNU time ignores SIGINT, sluice stops on it
        server.wait(timeout=60)
        log.close()
    if "Non-2xx or 3xx responses" in out:
        sys.exit(f"bench: the gateway refused requests under load:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    result = {
        "events_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * BATCH,
        "p50_ms": latency_ms(out, "50%"),
        "p99_ms": latency_ms(out, "99%"),
        "rss_mib": int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                                 (dir_ / "gateway.log").read_text()).group(1)) / 1024,
    }
    described = subprocess.run([sluice, "topics", "describe", topic], env=env, check=True,
                               capture_output=True, text=True).stdout
    stored = sum(int(line.split()[3]) for line in described.splitlines()
                 if re.match(r"\s+\d+\s+\d+\s+\d+\s+\d+", line))
    if stored < requests * BATCH:
        sys.exit(f"bench: {requests} requests answered but only {stored} events in {topic}")
    shutil.rmtree(dir_ / "lake", ignore_errors=True)
    return result


def latency_ms(wrk_out, percentile):
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", wrk_out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
