#!/usr/bin/env python3
"""Produce→alert latency, for bench/run.py: reads an alert topic until told to stop.

    alert_latency.py BROKERS TOPIC --after-ms MS [--field F] [--every N]

Consumes TOPIC from its start with librdkafka (confluent-kafka, not sluice's client) and, for
each alert whose event time is at or after MS (epoch ms: skips the warm-up), takes the time of
arrival less the event time. The producer stamps event times with its clock as it creates each
event, so this is the whole way: producer batching, broker, `sluice stream` and the alert
producer, broker again, and this consumer, on one machine's clock. On SIGINT or SIGTERM prints
{"alerts", "p50_ms", "p99_ms", "max_ms"} as JSON.

Pointed at the source topic (`--field ts --every 10`: every tenth event, to keep this reader
light), it measures one hop through the broker alone: the floor under the alert latency.
"""

import argparse
import datetime as dt
import json
import signal
import statistics
import time

from confluent_kafka import Consumer

from common import arrived


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("brokers")
    parser.add_argument("topic")
    parser.add_argument("--after-ms", type=int, required=True)
    parser.add_argument("--field", default="event_time", help="the event-time field")
    parser.add_argument("--every", type=int, default=1, help="measure one record in N")
    args = parser.parse_args()
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"latency-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5})
    consumer.subscribe([args.topic])
    latencies = []
    while not stop:
        for message in arrived(consumer, 0.1):
            arrived_ms = time.time() * 1000
            if message.error() or message.offset() % args.every:
                continue
            alert = json.loads(message.value())
            event_ms = dt.datetime.fromisoformat(alert[args.field]).timestamp() * 1000
            if event_ms >= args.after_ms:
                latencies.append(arrived_ms - event_ms)
    consumer.close()
    latencies.sort()
    result = {"alerts": len(latencies)}
    if latencies:
        result.update(p50_ms=statistics.median(latencies),
                      p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                      max_ms=latencies[-1])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
