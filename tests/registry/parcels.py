"""The Protobuf kind of tests/registry/records.py: Parcel messages (a nested message, repeated
messages and strings, an enum, a timestamp, a proto3 optional field, an unsigned integer).

PARCEL_PROTO is the .proto file sluice reads the stream as. Python's protobuf package cannot
compile .proto text without protoc, so `parcel_class` builds the same messages as
FileDescriptorProtos by hand; they must agree, and the end-to-end test fails when they do not
(sluice refuses every record whose writer schema differs from the stream's). The writer keeps
Address in a file of its own, which the serializer registers as a reference of the parcel's
schema, so the registry client's references are tested too.
"""

import datetime

PARCEL_PROTO = """\
syntax = "proto3";
package shipping;

import "google/protobuf/timestamp.proto";

message Parcel {
  enum Status { CREATED = 0; IN_TRANSIT = 1; DELIVERED = 2; }
  message Scan { string depot = 1; int32 seq = 2; }
  int64 parcel_id = 1;
  google.protobuf.Timestamp ts = 2;
  Status status = 3;
  Address to = 4;
  repeated Scan scans = 5;
  repeated string labels = 6;
  double weight_kg = 7;
  optional string note = 8;
  uint32 pieces = 9;
}

message Address { string city = 1; string postcode = 2; }
"""

START = datetime.datetime(2026, 11, 30, 22, 0, tzinfo=datetime.timezone.utc)
STATUSES = ["CREATED", "IN_TRANSIT", "DELIVERED"]


CARRIERS = ["post", "courier", "locker"]


def parcel_class(version=1):
    """The Parcel message class, from a FileDescriptorProto equal to PARCEL_PROTO (version 1);
    version 2 adds `optional string carrier = 10`, version 3 makes parcel_id a string (not
    readable as PARCEL_PROTO). Each version's files go into a pool of their own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2

    F = descriptor_pb2.FieldDescriptorProto
    addresses = descriptor_pb2.FileDescriptorProto(
        name="shipping/address.proto", package="shipping", syntax="proto3")
    file = descriptor_pb2.FileDescriptorProto(
        name="shipping/parcel.proto", package="shipping", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", addresses.name])
    parcel = file.message_type.add(name="Parcel")
    parcel.enum_type.add(name="Status").value.extend(
        descriptor_pb2.EnumValueDescriptorProto(name=name, number=n)
        for n, name in enumerate(STATUSES))

    def add(message, name, number, kind, type_name=None, repeated=False):
        field = message.field.add(name=name, number=number, type=kind, json_name=_camel(name),
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
        return field

    address = addresses.message_type.add(name="Address")
    add(address, "city", 1, F.TYPE_STRING)
    add(address, "postcode", 2, F.TYPE_STRING)
    scan = parcel.nested_type.add(name="Scan")
    add(scan, "depot", 1, F.TYPE_STRING)
    add(scan, "seq", 2, F.TYPE_INT32)
    add(parcel, "parcel_id", 1, F.TYPE_STRING if version == 3 else F.TYPE_INT64)
    add(parcel, "ts", 2, F.TYPE_MESSAGE, ".google.protobuf.Timestamp")
    add(parcel, "status", 3, F.TYPE_ENUM, ".shipping.Parcel.Status")
    add(parcel, "to", 4, F.TYPE_MESSAGE, ".shipping.Address")
    add(parcel, "scans", 5, F.TYPE_MESSAGE, ".shipping.Parcel.Scan", repeated=True)
    add(parcel, "labels", 6, F.TYPE_STRING, repeated=True)
    add(parcel, "weight_kg", 7, F.TYPE_DOUBLE)
    note = add(parcel, "note", 8, F.TYPE_STRING)
    note.proto3_optional = True
    note.oneof_index = 0
    parcel.oneof_decl.add(name="_note")
    add(parcel, "pieces", 9, F.TYPE_UINT32)
    if version >= 2:
        carrier = add(parcel, "carrier", 10, F.TYPE_STRING)
        carrier.proto3_optional = True
        carrier.oneof_index = 1
        parcel.oneof_decl.add(name="_carrier")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(addresses)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shipping.Parcel"))


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def parcel(i):
    """Parcel `i` as a reader of the table gets it back (the enum as its name)."""
    return {
        "parcel_id": i,
        "ts": START + datetime.timedelta(milliseconds=i * 97),
        "status": STATUSES[i % 3],
        "to": None if i % 10 == 0 else {"city": f"city {i % 89}", "postcode": f"{i % 9973:05}"},
        "scans": [{"depot": f"depot-{(i + k) % 17}", "seq": k} for k in range(i % 4)],
        "labels": [f"label-{k}" for k in range(i % 3)],
        "weight_kg": (i % 5000) / 8,
        "note": None if i % 4 else f"note {i} ✓",
        "pieces": 4_000_000_000 + i,
    }


def parcel_message(cls, version=1):
    """A function making parcel `i` as a message of `cls` (of `version`, see parcel_class)."""
    def make(i):
        row = parcel(i)
        message = cls(parcel_id=str(i) if version == 3 else i, status=row["status"],
                      labels=row["labels"], weight_kg=row["weight_kg"], pieces=row["pieces"])
        if version == 2:
            message.carrier = CARRIERS[i % 3]
        message.ts.FromDatetime(row["ts"])
        if row["to"] is not None:
            message.to.city = row["to"]["city"]
            message.to.postcode = row["to"]["postcode"]
        for scan in row["scans"]:
            message.scans.add(**scan)
        if row["note"] is not None:
            message.note = row["note"]
        return message
    return make
