#!/usr/bin/env python3
"""Independent reader of a sluice Iceberg table, through the same catalog, used by the Rust
end-to-end tests.

    check_iceberg.py CATALOG_DB_OR_URL CATALOG_NAME WAREHOUSE NAMESPACE.TABLE

Opens the catalog with pyiceberg's own SqlCatalog (SQLAlchemy over the SQLite file, or over
PostgreSQL for a postgresql+psycopg2:// URL) or, for an http(s):// URL, its own RestCatalog (OAuth2 client credentials from ICEBERG_REST_CREDENTIAL),
loads the table and reads it with pyiceberg's scan (its manifests, its Parquet reader by field id). Prints
ONE JSON object on stdout, in check_delta.py's shape plus Iceberg's own checks:

    {"rows": N, "files": F,
     "partitions": {"<kafka _partition>": {"count": n, "min_offset": a, "max_offset": b,
                                          "distinct_offsets": d}},
     "operations": ["append", ...],            # every snapshot of main, oldest first
     "offsets_move_forward": true|false,       # each snapshot's sluice.progress >= its parent's
     "snapshots_with_progress": k,
     "paths_live_twice": [...],                # data files live in more than one entry
     "partition_values_match": true|false,     # each file's ts_hour/ts_day holds its rows' ts
     "mismatched_files": ["<up to 5 examples>"]}

For s3:// locations the store is reached with the AWS_* variables (`scripts/services.sh env`).
Exits non-zero, with the reason on stderr, when the table cannot be read.
"""

import collections
import datetime as dt
import json
import os
import sys

MAX_EXAMPLES = 5
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def fail(message, code=1):
    print(f"check_iceberg: {message}", file=sys.stderr)
    sys.exit(code)


def s3_properties():
    """pyiceberg's properties for an s3:// store reached with the AWS_* variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    return {
        "s3.endpoint": endpoint,
        "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
    }


def catalog(where, name, warehouse):
    """pyiceberg's SqlCatalog over the SQLite file `where` or the PostgreSQL database at the
    SQLAlchemy URL `where` (`postgresql+psycopg2://…`), or its RestCatalog at the URL `where`
    (with ICEBERG_REST_CREDENTIAL as its OAuth2 client credentials, when set)."""
    props = {"warehouse": warehouse, **s3_properties()}
    if where.startswith("postgresql"):
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog(name, uri=where, **props)
    if where.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        props["uri"] = where
        credential = os.environ.get("ICEBERG_REST_CREDENTIAL")
        if credential:
            props["credential"] = credential
        return RestCatalog(name, **props)
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(name, uri=f"sqlite:///{os.path.abspath(where)}", **props)


def main_ancestry(table):
    """Snapshots of main, oldest first."""
    snapshots = {s.snapshot_id: s for s in table.metadata.snapshots}
    chain = []
    current = table.current_snapshot()
    while current is not None:
        chain.append(current)
        parent = current.parent_snapshot_id
        current = snapshots.get(parent) if parent is not None else None
    return list(reversed(chain))


def offsets_move_forward(chain):
    previous = {}
    with_progress = 0
    for snapshot in chain:
        raw = (snapshot.summary.additional_properties or {}).get("sluice.progress")
        if raw is None:
            continue
        with_progress += 1
        progress = {
            (topic, int(p)): reached["offset"]
            for topic, partitions in json.loads(raw).items()
            for p, reached in partitions.items()
        }
        for key, offset in previous.items():
            if key not in progress or progress[key] < offset:
                return False, with_progress
        previous = progress
    return True, with_progress


def partition_values(table, files):
    """Each live file's partition value against the event times of its rows."""
    import pyarrow.parquet as pq

    io = table.io
    mismatched = []
    for path, partition in files:
        with io.new_input(path).open() as f:
            ts = pq.read_table(f, columns=["ts"]).column("ts").to_pylist()
        for field, value in partition.items():
            for t in ts:
                delta = t - EPOCH
                unit = delta // dt.timedelta(hours=1) if field.endswith("_hour") else delta.days
                expected = unit if field.endswith("_hour") else dt.date(1970, 1, 1) + dt.timedelta(days=unit)
                if value != expected and value != unit:
                    mismatched.append(f"{path}: {field}={value}, a row at {t}")
                    break
    return mismatched


def main():
    if len(sys.argv) != 5:
        fail(__doc__.strip().splitlines()[3].strip(), 2)
    db, name, warehouse, ident = sys.argv[1:]
    try:
        table = catalog(db, name, warehouse).load_table(ident)
    except Exception as err:  # the reason goes to the test's failure message
        fail(f"cannot load {ident} from {db}: {err!r}")
    rows = table.scan(selected_fields=("_partition", "_offset")).to_arrow()
    partitions = collections.defaultdict(list)
    for p, o in zip(rows.column("_partition").to_pylist(), rows.column("_offset").to_pylist()):
        partitions[p].append(o)
    entries = table.inspect.entries().to_pylist()
    live = collections.Counter(
        e["data_file"]["file_path"] for e in entries if e["status"] in (0, 1)
    )
    files = [
        (f["file_path"], {k: v for k, v in f["partition"].items()})
        for f in table.inspect.files().to_pylist()
    ]
    mismatched = partition_values(table, files)
    chain = main_ancestry(table)
    forward, with_progress = offsets_move_forward(chain)
    print(
        json.dumps(
            {
                "rows": rows.num_rows,
                "files": len(files),
                "partitions": {
                    str(p): {
                        "count": len(offsets),
                        "min_offset": min(offsets),
                        "max_offset": max(offsets),
                        "distinct_offsets": len(set(offsets)),
                    }
                    for p, offsets in sorted(partitions.items())
                },
                "operations": [s.summary.operation.value for s in chain],
                "offsets_move_forward": forward,
                "snapshots_with_progress": with_progress,
                "paths_live_twice": [p for p, n in live.items() if n > 1][:MAX_EXAMPLES],
                "partition_values_match": not mismatched,
                "mismatched_files": mismatched[:MAX_EXAMPLES],
            }
        )
    )


if __name__ == "__main__":
    main()
