#!/usr/bin/env python3
"""The floor under produce→alert, for bench/run.py: a plain librdkafka relay.

    relay.py BROKERS SOURCE OUT --every N [--warm-up-s S]

Consumes SOURCE in a consumer group with the settings `sluice stream`'s consumer uses, and
sends every record whose offset is a multiple of N on to OUT, unchanged, with the settings of
sluice's side-output producer (idempotent, acks=all, linger.ms=1). No decoding, no rule, no
lake: what is left of produce→alert is the broker, twice, and librdkafka's clients. With N
near the ratio of events to alerts, OUT receives about as many records as the alert topic.
Prints "assigned" once it holds partitions, and runs until SIGINT or SIGTERM; then prints, as
JSON, the relay's own part for the records it sent from S seconds after its first: p50 and p99
of librdkafka's produce()→acknowledgement time (`Message.latency()`), which is the relay's
whole time from consumed to acknowledged, since it sends a record as soon as it is consumed:
the counterpart of sluice's own-latency histogram.
"""

import argparse
import json
import signal
import sys
import threading
import time

from confluent_kafka import Consumer, Producer

from common import arrived


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("brokers")
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--every", type=int, required=True)
    parser.add_argument("--warm-up-s", type=float, default=0)
    args = parser.parse_args()
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    assigned = []
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"relay-{time.time()}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False,
                         "session.timeout.ms": 10000, "heartbeat.interval.ms": 3000,
                         "partition.assignment.strategy": "cooperative-sticky"})
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 1, "message.timeout.ms": 0,
                         "queue.buffering.max.messages": 1000000})
    consumer.subscribe([args.source], on_assign=lambda _c, parts: assigned.append(parts))
    announced = False
    acknowledged = []
    counted = lambda err, message: err is None and acknowledged.append(message.latency())
    first = None
    # Acknowledgements are served on a thread of their own, as sluice's producer does (and
    # Message.latency() is taken when they are served).
    def serve_acknowledgements():
        while not stop:
            producer.poll(0.01)

    poller = threading.Thread(target=serve_acknowledgements)
    poller.start()
    while not stop:
        for message in arrived(consumer, 0.1):
            if not message.error() and message.offset() % args.every == 0:
                first = first or time.monotonic()
                after = time.monotonic() - first >= args.warm_up_s
                producer.produce(args.out, message.value(), key=message.key(),
                                 partition=message.partition(),
                                 on_delivery=counted if after else None)
        if assigned and not announced:
            print("assigned", flush=True)
            announced = True
    poller.join()
    producer.flush(10)
    consumer.close()
    acknowledged.sort()
    quantile = lambda q: acknowledged[min(int(q * len(acknowledged)), len(acknowledged) - 1)] * 1000
    print(json.dumps({"records": len(acknowledged)} | ({"p50_ms": quantile(0.5),
                     "p99_ms": quantile(0.99)} if acknowledged else {})), flush=True)


if __name__ == "__main__":
    sys.exit(main())
