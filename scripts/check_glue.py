#!/usr/bin/env python3
"""Independent reader of what sluice registered in an AWS Glue catalog (moto's server mode here,
the stand-in for Glue), used by the Rust end-to-end tests. Runs in the glue venv
(`scripts/python-env.sh glue`).

    check_glue.py tables ENDPOINT DATABASE
        ONE JSON object: every table of DATABASE as boto3's Glue client returns it
        {"<table>": {"type", "parameters", "location", "columns": [[name, type]],
                     "partition_keys": [[name, type]], "serde", "input_format"}}
    check_glue.py iceberg ENDPOINT DATABASE TABLE
        Loads TABLE with pyiceberg's own GlueCatalog and scans it:
        {"rows": N, "distinct_offsets": D, "metadata_location": "...", "snapshots": S}
    check_glue.py disown ENDPOINT DATABASE TABLE
        Rewrites TABLE's parameters without sluice's marker, as another tool registering a
        table of that name would.
    check_glue.py drop ENDPOINT DATABASE TABLE
        Deletes TABLE from Glue (its data stays).

The store (s3s-fs) is reached with the AWS_* variables (`scripts/services.sh env`); Glue at
ENDPOINT with the same keys (moto takes any), region us-east-1.
Exits non-zero, with the reason on stderr, when a table cannot be read.
"""

import json
import os
import sys

REGION = "us-east-1"


def fail(message, code=1):
    print(f"check_glue: {message}", file=sys.stderr)
    sys.exit(code)


def glue(endpoint):
    import boto3

    return boto3.client(
        "glue",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def tables(endpoint, database):
    out = {}
    for page in glue(endpoint).get_paginator("get_tables").paginate(DatabaseName=database):
        for t in page["TableList"]:
            sd = t.get("StorageDescriptor", {})
            out[t["Name"]] = {
                "type": t.get("TableType"),
                "parameters": t.get("Parameters", {}),
                "location": sd.get("Location"),
                "columns": [[c["Name"], c.get("Type")] for c in sd.get("Columns", [])],
                "partition_keys": [[c["Name"], c.get("Type")] for c in t.get("PartitionKeys", [])],
                "serde": sd.get("SerdeInfo", {}).get("SerializationLibrary"),
                "input_format": sd.get("InputFormat"),
            }
    return out


def iceberg(endpoint, database, table):
    from pyiceberg.catalog.glue import GlueCatalog

    props = {
        "glue.endpoint": endpoint,
        "glue.region": REGION,
        "glue.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "glue.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    }
    s3 = os.environ.get("AWS_ENDPOINT_URL")
    if s3:
        props.update(
            {
                "s3.endpoint": s3,
                "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", ""),
                "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                "s3.region": os.environ.get("AWS_REGION", REGION),
            }
        )
    try:
        loaded = GlueCatalog("glue", **props).load_table(f"{database}.{table}")
    except Exception as err:  # the reason goes to the test's failure message
        fail(f"cannot load {database}.{table} through Glue at {endpoint}: {err!r}")
    rows = loaded.scan(selected_fields=("_partition", "_offset")).to_arrow()
    pairs = set(zip(rows.column("_partition").to_pylist(), rows.column("_offset").to_pylist()))
    return {
        "rows": rows.num_rows,
        "distinct_offsets": len(pairs),
        "metadata_location": loaded.metadata_location,
        "snapshots": len(loaded.metadata.snapshots),
    }


def disown(endpoint, database, table):
    client = glue(endpoint)
    t = client.get_table(DatabaseName=database, Name=table)["Table"]
    parameters = {k: v for k, v in t.get("Parameters", {}).items() if not k.startswith("sluice.")}
    client.update_table(
        DatabaseName=database,
        TableInput={
            "Name": table,
            "TableType": t.get("TableType", "EXTERNAL_TABLE"),
            "Parameters": parameters,
            "StorageDescriptor": t.get("StorageDescriptor", {}),
            "PartitionKeys": t.get("PartitionKeys", []),
        },
    )
    return {"disowned": table}


def drop(endpoint, database, table):
    glue(endpoint).delete_table(DatabaseName=database, Name=table)
    return {"dropped": table}


def main():
    commands = {
        "tables": (tables, 2),
        "iceberg": (iceberg, 3),
        "disown": (disown, 3),
        "drop": (drop, 3),
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        fail(__doc__.strip(), 2)
    command, arity = commands[sys.argv[1]]
    if len(sys.argv) != arity + 2:
        fail(f"{sys.argv[1]} takes {arity} arguments", 2)
    print(json.dumps(command(*sys.argv[2:])))


if __name__ == "__main__":
    main()
