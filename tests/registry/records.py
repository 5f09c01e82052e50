"""Records through Confluent's own serializers, and the check of what sluice landed.

Three kinds (--kind): "orders", Avro records of ORDER_V1 (a nested record, an array of records,
a decimal, timestamp-millis, an enum, nullable unions); "readings", JSON records of the JSON
Schema READING; "parcels", Protobuf messages of parcels.PARCEL_PROTO.

  produce   Confluent's AvroSerializer, JSONSerializer or ProtobufSerializer (confluent-kafka's
            Schema Registry
            client, against the registry at --registry, as --auth user:password if given)
            writes --count records to --topic from id --first, keyed by id. Records are a
            function of their id. Each kind takes --version 2 (an added optional field:
            channel, carrier or site) or 3 (order_id, parcel_id or ok as text: incompatible
            with the stream's schema).
  schema    Prints the schema the stream reads the records as (the .avsc or JSON Schema file).
  json      Prints --count records as JSON lines, as a client of `sluice gateway` sends them
            (timestamps and dates as ISO 8601 text, decimals as text).
  consume   Reads --count records from --topic with Confluent's AvroDeserializer or
            ProtobufDeserializer and checks that each is record `i` (by its id) exactly once:
            what `sluice gateway` produced from `json`'s lines.
  check     Reads the table at --table (a Delta table's path, read with the deltalake package,
            or iceberg:CATALOG_DB#CATALOG#NAMESPACE.TABLE, read with pyiceberg: the readers of
            scripts/query_table.py), and checks that it holds each id from 0 to --count once,
            every value equal to what `produce` made of it (with --v2-from K, records from K
            on are version 2's, the earlier ones have no channel, carrier or site).

Independent of sluice: the producer is librdkafka and Confluent's serializer; the reader is
delta-rs through pyarrow, or pyiceberg.
"""

import argparse
import datetime
import decimal
import json
import os
import sys

from parcels import CARRIERS, PARCEL_PROTO, parcel, parcel_class, parcel_message

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

# Version 2 adds an optional field, which a table reading ORDER_V1 gains as a column.
ORDER_V2 = dict(ORDER_V1, fields=ORDER_V1["fields"] + [
    {"name": "channel", "type": ["null", "string"], "default": None}])
# Version 3 makes order_id a string: records of it cannot be read as ORDER_V1's long.
ORDER_V3 = dict(ORDER_V2, fields=[{"name": "order_id", "type": "string"}] + ORDER_V2["fields"][1:])
CHANNELS = ["web", "shop", "phone"]


def order_v2(i):
    return dict(order(i), channel=CHANNELS[i % 3])


def order_v3(i):
    return dict(order_v2(i), order_id=str(i))


READING = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Reading", "type": "object",
    "required": ["reading_id", "device_id", "ts"],
    "properties": {
        "reading_id": {"type": "integer"},
        "device_id": {"type": "string"},
        "ts": {"type": "string", "format": "date-time"},
        "temperature_c": {"type": ["number", "null"]},
        "ok": {"type": "boolean"},
        "day": {"type": "string", "format": "date"},
    },
}

# Version 2 adds an optional property, which a table reading READING gains as a column;
# version 3 makes `ok` text, which the stream's boolean field cannot read.
READING_V2 = dict(READING, properties=dict(READING["properties"],
                                           site={"type": ["string", "null"]}))
READING_V3 = dict(READING_V2, properties=dict(READING_V2["properties"], ok={"type": "string"}))
SITES = ["north", "south", "west"]

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


def reading(i):
    """Reading `i` as the table holds it; `reading_json` is how the producer sends it."""
    return {
        "reading_id": i,
        "device_id": f"device-{i % 313}",
        "ts": START + datetime.timedelta(milliseconds=i * 131),
        "temperature_c": None if i % 11 == 0 else round(20 + (i % 400) / 16, 4),
        "ok": i % 4 != 0,
        "day": datetime.date(2026, 1, 1) + datetime.timedelta(days=i % 300),
    }


def reading_json(i):
    row = reading(i)
    row["ts"] = row["ts"].isoformat().replace("+00:00", "Z")
    row["day"] = row["day"].isoformat()
    return row


def reading_json_v2(i):
    return dict(reading_json(i), site=SITES[i % 3])


def reading_json_v3(i):
    return dict(reading_json_v2(i), ok=str(i % 4 != 0))


KINDS = {  # kind: schema, the record a producer sends, the row a reader gets, its id column
    "orders": (ORDER_V1, order, order, "order_id"),
    "readings": (READING, reading_json, reading, "reading_id"),
    # The producer's messages are made from the message class, built when producing.
    "parcels": (PARCEL_PROTO, None, parcel, "parcel_id"),
}


# The optional field each kind's version 2 adds, and its values (by id mod 3).
ADDED = {"orders": ("channel", CHANNELS), "parcels": ("carrier", CARRIERS),
         "readings": ("site", SITES)}


def produce(args):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    config = {"url": args.registry}
    if args.auth:
        config["basic.auth.user.info"] = args.auth
    registry = SchemaRegistryClient(config)
    schema, record, _, _ = KINDS[args.kind]
    if args.kind == "orders":
        schema, record = {1: (ORDER_V1, order), 2: (ORDER_V2, order_v2),
                          3: (ORDER_V3, order_v3)}[args.version]
        serialize = AvroSerializer(registry, json.dumps(schema))
    elif args.kind == "parcels":
        cls = parcel_class(args.version)
        serialize = ProtobufSerializer(cls, registry, {"use.deprecated.format": False})
        record = parcel_message(cls, args.version)
    else:
        schema, record = {1: (READING, reading_json), 2: (READING_V2, reading_json_v2),
                          3: (READING_V3, reading_json_v3)}[args.version]
        serialize = JSONSerializer(json.dumps(schema), registry)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20,
                         "enable.idempotence": False})
    context = SerializationContext(args.topic, MessageField.VALUE)
    failed = []
    for i in range(args.first, args.first + args.count):
        value = serialize(record(i), context)
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
    print(f"produced {args.count} {args.kind} to {args.topic}")


def json_form(value):
    """How JSON carries the Python values of a record."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"no JSON form for {value!r}")


def print_json(args):
    _, _, row, _ = KINDS[args.kind]
    for i in range(args.count):
        print(json.dumps(row(i), default=json_form, ensure_ascii=False))


def consume(args):
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    config = {"url": args.registry}
    if args.auth:
        config["basic.auth.user.info"] = args.auth
    registry = SchemaRegistryClient(config)
    _, _, expected, id_column = KINDS[args.kind]
    if args.kind == "parcels":
        cls = parcel_class()
        deserialize = ProtobufDeserializer(cls, {"use.deprecated.format": False})
        expected, read_id = parcel_message(cls), lambda m: m.parcel_id
    else:
        deserialize = AvroDeserializer(registry)
        read_id = lambda record: record[id_column]  # noqa: E731
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "records-consume",
                         "enable.auto.commit": False})
    metadata = consumer.list_topics(args.topic, timeout=30).topics[args.topic]
    consumer.assign([TopicPartition(args.topic, p, 0) for p in metadata.partitions])
    context = SerializationContext(args.topic, MessageField.VALUE)
    seen = set()
    idle = 0
    while idle < 10 and len(seen) < args.count:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1
            continue
        if message.error():
            sys.exit(f"consume: {message.error()}")
        idle = 0
        record = deserialize(message.value(), context)
        i = read_id(record)
        if i in seen:
            sys.exit(f"consume: {args.kind} {i} twice")
        if record != expected(i):
            sys.exit(f"consume: {args.kind} {i} differs:\n{record}\nwanted\n{expected(i)}")
        seen.add(i)
    consumer.close()
    if seen != set(range(args.count)):
        sys.exit(f"consume: {len(seen)} of {args.count} {args.kind} read")
    print(f"consume: {len(seen)} {args.kind}, each as sent")


def read_table(where):
    """The table at `where` as a pyarrow table, read by scripts/query_table.py's readers."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "scripts"))
    from query_table import read

    return read(where)


def check(args):
    _, _, expected, id_column = KINDS[args.kind]
    if args.v2_from is not None:  # version 2's records from this id on
        column, values = ADDED[args.kind]
        plain = expected
        expected = lambda i: dict(plain(i), **{column: values[i % 3] if i >= args.v2_from else None})  # noqa: E731
    table = read_table(args.table)
    rows = table.select(list(expected(0))).to_pylist()
    ids = sorted(row[id_column] for row in rows)
    if ids != list(range(args.count)):
        missing = sorted(set(range(args.count)) - set(ids))
        doubled = len(ids) - len(set(ids))
        sys.exit(f"check: {len(ids)} rows; {len(missing)} ids missing "
                 f"(first {missing[:5]}), {doubled} doubled")
    for row in rows:
        want = expected(row[id_column])
        if row != want:
            differing = {k: (row[k], want[k]) for k in want if row[k] != want[k]}
            sys.exit(f"check: {args.kind} {row[id_column]} differs (landed, produced): "
                     f"{differing}")
    print(f"check: {len(rows)} {args.kind}, every value as produced")


def schema_text(schema):
    """A schema as its file holds it: .proto text as it is, the others as JSON."""
    return schema if isinstance(schema, str) else json.dumps(schema, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--auth", help="user:password for the registry (HTTP Basic)")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first", type=int, default=0, help="the first record's id")
    p.add_argument("--version", type=int, choices=[1, 2, 3], default=1,
                   help="the schema version (2 adds channel, carrier or site; 3 makes "
                        "order_id or parcel_id text, or ok)")
    sub.add_parser("schema")
    j = sub.add_parser("json")
    j.add_argument("--count", type=int, required=True)
    r = sub.add_parser("consume")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--registry", required=True)
    r.add_argument("--auth")
    r.add_argument("--topic", required=True)
    r.add_argument("--count", type=int, required=True)
    c = sub.add_parser("check")
    c.add_argument("--table", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--v2-from", type=int, help="ids from here on are version 2's")
    parser.add_argument("--kind", choices=sorted(KINDS), default="orders")
    args = parser.parse_args()
    commands = {"produce": produce, "check": check, "json": print_json, "consume": consume,
                "schema": lambda _: print(schema_text(KINDS[args.kind][0]))}
    commands[args.command](args)


if __name__ == "__main__":
    main()
