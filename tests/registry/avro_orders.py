"""Avro orders through Confluent's own serializer, and the check of what sluice landed.

  produce   Confluent's AvroSerializer (confluent-kafka's Schema Registry client, against the
            registry at --registry, as --auth user:password if given) writes --count orders of schema ORDER_V1 to --topic, keyed
            by order id. Orders are a function of their id, from --first.
  schema    Prints ORDER_V1, the Avro schema the stream reads orders as.
  check     Reads the Delta table at --table with the deltalake package (pyarrow), and checks
            that it holds each order id from 0 to --count once, every value equal to what
            `produce` made of it.

Independent of sluice: the producer is librdkafka and Confluent's serializer; the reader is
delta-rs through pyarrow.
"""

import argparse
import datetime
import decimal
import json
import sys

ORDER_V1 = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "items", "type": {"type": "array", "items": {
            "type": "record", "name": "Item",
            "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string"},
            {"name": "vip", "type": "boolean"},
            {"name": "since", "type": {"type": "int", "logicalType": "date"}}]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "score", "type": ["null", "double"], "default": None},
    ],
}

START = datetime.datetime(2026, 11, 30, 22, 0, tzinfo=datetime.timezone.utc)


def order(i):
    """Order `i`, as the producer sends it (Python values of ORDER_V1) and as a reader of the
    table gets it back (the enum as its symbol, timestamps in UTC)."""
    return {
        "order_id": i,
        # Milliseconds apart, over three hours: several date/hour partitions.
        "ts": START + datetime.timedelta(milliseconds=i * 97),
        "status": ["NEW", "PAID", "SHIPPED"][i % 3],
        "amount": decimal.Decimal(i * 7919 % 10_000_000) / 100 - 5000,
        "items": [{"sku": f"sku-{(i + k) % 131}", "qty": k + 1} for k in range(i % 4)],
        "customer": {"name": f"customer {i % 977}", "vip": i % 5 == 0,
                     "since": datetime.date(2020, 1, 1) + datetime.timedelta(days=i % 2000)},
        "note": None if i % 3 else f"note {i} ✓",
        "score": None if i % 7 == 0 else i / 8,
    }


def produce(args):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    config = {"url": args.registry}
    if args.auth:
        config["basic.auth.user.info"] = args.auth
    registry = SchemaRegistryClient(config)
    serialize = AvroSerializer(registry, json.dumps(ORDER_V1))
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20,
                         "enable.idempotence": False})
    context = SerializationContext(args.topic, MessageField.VALUE)
    failed = []
    for i in range(args.first, args.first + args.count):
        value = serialize(order(i), context)
        while True:
            try:
                producer.produce(args.topic, key=str(i).encode(), value=value,
                                 on_delivery=lambda err, msg: err and failed.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) or failed:
        sys.exit(f"produce: {len(failed)} records failed: {failed[:3]}")
    print(f"produced {args.count} orders to {args.topic}")


def check(args):
    from deltalake import DeltaTable

    table = DeltaTable(args.table).to_pyarrow_table()
    names = list(order(0))
    rows = table.select(names).to_pylist()
    ids = sorted(row["order_id"] for row in rows)
    if ids != list(range(args.count)):
        missing = sorted(set(range(args.count)) - set(ids))
        doubled = len(ids) - len(set(ids))
        sys.exit(f"check: {len(ids)} rows; {len(missing)} ids missing "
                 f"(first {missing[:5]}), {doubled} doubled")
    for row in rows:
        want = order(row["order_id"])
        if row != want:
            differing = {k: (row[k], want[k]) for k in want if row[k] != want[k]}
            sys.exit(f"check: order {row['order_id']} differs (landed, produced): {differing}")
    print(f"check: {len(rows)} orders, every value as produced")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--auth", help="user:password for the registry (HTTP Basic)")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first", type=int, default=0)
    sub.add_parser("schema")
    c = sub.add_parser("check")
    c.add_argument("--table", required=True)
    c.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    commands = {"produce": produce, "check": check,
                "schema": lambda _: print(json.dumps(ORDER_V1, indent=2))}
    commands[args.command](args)


if __name__ == "__main__":
    main()
