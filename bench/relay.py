#!/usr/bin/env python3
"""The floor under produce→alert, for bench/run.py: a plain librdkafka relay.

    relay.py BROKERS SOURCE OUT --every N

Consumes SOURCE in a consumer group with the settings `sluice stream`'s consumer uses, and
sends every record whose offset is a multiple of N on to OUT, unchanged, with the settings of
sluice's side-output producer (idempotent, acks=all, linger.ms=1). No decoding, no rule, no
lake: what is left of produce→alert is the broker, twice, and librdkafka's clients. With N
near the ratio of events to alerts, OUT receives about as many records as the alert topic.
Prints "assigned" once it holds partitions, and runs until SIGINT or SIGTERM.
"""

import argparse
import signal
import sys
import time

from confluent_kafka import Consumer, Producer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("brokers")
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--every", type=int, required=True)
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
    while not stop:
        for message in consumer.consume(num_messages=1000, timeout=0.1):
            if not message.error() and message.offset() % args.every == 0:
                producer.produce(args.out, message.value(), key=message.key(),
                                 partition=message.partition())
        producer.poll(0)
        if assigned and not announced:
            print("assigned", flush=True)
            announced = True
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    sys.exit(main())
