#!/usr/bin/env python3
"""Deterministic sensor events as NDJSON, for the benchmarks (stdlib only).

    gen_sensor.py --events 1000000 --devices 1000 --hours 1 --out sensor-1M.ndjson
    gen_sensor.py --events 500000 --hours 48 --shuffle --out wide.ndjson

Each line is one event of about 175 bytes with the fields of examples/schemas/
sensor_event.schema.json: device_id, ts (RFC 3339, UTC), temperature_c, vibration_g, status,
site, line. Event times advance evenly over --hours from --start; --out-of-order moves that
share of events back by up to 30 s, --late that share back by 2-10 minutes (beyond a 30 s
allowed lateness). --shuffle spreads event times uniformly at random over the whole span
instead, so that every Kafka partition's batches touch every date/hour partition (the memory
worst case). The same arguments always give the same bytes.
"""

import argparse
import datetime as dt
import json
import random


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--start", default="2026-11-22T00:00:00+00:00")
    parser.add_argument("--out-of-order", type=float, default=0.05)
    parser.add_argument("--late", type=float, default=0.005)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    start = dt.datetime.fromisoformat(args.start)
    span_us = int(args.hours * 3600 * 1_000_000)
    step_us = span_us / max(args.events, 1)
    sites = ["plant-north-assembly", "plant-south-assembly", "plant-east-foundry"]
    statuses = ["ok"] * 17 + ["warn", "warn", "fault"]
    with open(args.out, "w", encoding="utf-8") as out:
        for i in range(args.events):
            if args.shuffle:
                offset_us = rng.randrange(span_us)
            else:
                offset_us = int(i * step_us)
                roll = rng.random()
                if roll < args.late:
                    offset_us -= rng.randrange(120_000_000, 600_000_000)
                elif roll < args.late + args.out_of_order:
                    offset_us -= rng.randrange(0, 30_000_000)
                offset_us = max(offset_us, 0)
            ts = start + dt.timedelta(microseconds=offset_us)
            device = rng.randrange(args.devices)
            event = {
                "device_id": f"sensor-{device:05d}",
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "temperature_c": round(rng.gauss(60.0, 12.0), 3),
                "vibration_g": round(abs(rng.gauss(0.2, 0.12)), 3),
                "status": rng.choice(statuses),
                "site": sites[device % len(sites)],
                "line": f"line-{device % 12:02d}-press",
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
