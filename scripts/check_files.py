#!/usr/bin/env python3
"""Independent reader of a sluice plain-files table (Parquet, CSV or JSON Lines objects), used by
the Rust end-to-end tests.

    check_files.py TABLE_URI FORMAT

Lists every object under the table as a Hive-style reader (Athena) does, skipping any path
component that starts with `_` or `.` (sluice's `_sluice/` log and staged copies), and reads
each one with code that is not sluice's: pyarrow for Parquet, Python's `csv` (after `gzip`) for
CSV, `json` for JSON Lines. Prints ONE JSON object on stdout, in check_delta.py's shape:

    {"rows": N, "files": F,
     "partitions": {"<kafka _partition>": {"count": n, "min_offset": a, "max_offset": b,
                                          "distinct_offsets": d}},
     "partition_dirs_match": true|false, "mismatched_dirs": ["<up to 5 examples>"],
     "header_ok": true|false}

`partition_dirs_match` is true when every row's `ts` falls in the UTC date and hour its path
names (`date=YYYY-MM-DD/hour=H/`). `header_ok` is true when every CSV object starts with a
header row naming `_partition`, `_offset` and `ts` (always true for other formats). For s3://
URIs the store is reached with the AWS_* variables (`scripts/services.sh env`). Exits non-zero,
with the reason on stderr, when the table cannot be read.
"""

import csv
import datetime as dt
import gzip
import io
import json
import os
import sys
import urllib.parse

MAX_EXAMPLES = 5


def fail(message, code=1):
    print(f"check_files: {message}", file=sys.stderr)
    sys.exit(code)


def filesystem(uri):
    """(pyarrow filesystem, root path in it) for a table URI."""
    from pyarrow import fs

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        scheme = "http" if endpoint.startswith("http://") else "https"
        s3 = fs.S3FileSystem(
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=os.environ.get("AWS_REGION", "us-east-1"),
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme=scheme,
        )
        return s3, parsed.netloc + parsed.path.rstrip("/")
    path = parsed.path if parsed.scheme == "file" else uri
    return fs.LocalFileSystem(), os.path.abspath(path)


def partition_of(relative):
    """The (date, hour) a Hive-style path names."""
    values = dict(part.split("=", 1) for part in relative.split("/")[:-1] if "=" in part)
    return values.get("date"), values.get("hour")


def parse_ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def rows_of(filesystem_, path, kind):
    """(partition, offset, ts as aware UTC datetime) per row; and whether a CSV header is right."""
    import pyarrow.parquet as pq

    if kind == "parquet":
        table = pq.read_table(path, filesystem=filesystem_, columns=["_partition", "_offset", "ts"])
        rows = zip(*(table.column(c).to_pylist() for c in ("_partition", "_offset", "ts")))
        return [(p, o, ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts)
                for p, o, ts in rows], True
    with filesystem_.open_input_stream(path, compression=None) as stream:
        raw = stream.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header_ok = {"_partition", "_offset", "ts"} <= set(reader.fieldnames or [])
        return [(int(r["_partition"]), int(r["_offset"]), parse_ts(r["ts"])) for r in reader], header_ok
    rows = []
    for line in text.splitlines():
        record = json.loads(line)
        rows.append((record["_partition"], record["_offset"], parse_ts(record["ts"])))
    return rows, True


def visible_objects(filesystem_, root, uri):
    """(path, path relative to root) of every object a Hive-style reader sees under root: one
    listing (no HEAD of the root, which s3s-fs answers with a 500 for a prefix), skipping path
    components that start with `_` or `.`."""
    from pyarrow import fs

    try:
        infos = filesystem_.get_file_info(fs.FileSelector(root, recursive=True))
    except Exception as e:  # noqa: BLE001 — any failure to list is the answer
        fail(f"cannot list {uri}: {type(e).__name__}: {e}")
    visible = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        relative = info.path[len(root):].lstrip("/")
        if not any(part.startswith(("_", ".")) for part in relative.split("/")):
            visible.append((info.path, relative))
    return visible


def check(uri, kind):
    filesystem_, root = filesystem(uri)
    partitions, mismatched, files, header_ok = {}, [], 0, True
    for path, relative in visible_objects(filesystem_, root, uri):
        files += 1
        date, hour = partition_of(relative)
        try:
            rows, header = rows_of(filesystem_, path, kind)
        except Exception as e:  # noqa: BLE001
            fail(f"cannot read {relative}: {type(e).__name__}: {e}")
        header_ok = header_ok and header
        for p, o, ts in rows:
            seen = partitions.setdefault(str(p), {"count": 0, "offsets": set()})
            seen["count"] += 1
            seen["offsets"].add(o)
            if (ts.date().isoformat(), str(ts.hour)) != (date, hour) and len(mismatched) < MAX_EXAMPLES:
                mismatched.append(f"{relative}: offset {p}/{o} at {ts.isoformat()}")
    out = {
        "rows": sum(s["count"] for s in partitions.values()),
        "files": files,
        "partitions": {
            p: {"count": s["count"], "distinct_offsets": len(s["offsets"]),
                "min_offset": min(s["offsets"]), "max_offset": max(s["offsets"])}
            for p, s in partitions.items()
        },
        "partition_dirs_match": not mismatched,
        "mismatched_dirs": mismatched,
        "header_ok": header_ok,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("parquet", "csv", "jsonl"):
        fail("usage: check_files.py TABLE_URI parquet|csv|jsonl", 2)
    check(sys.argv[1], sys.argv[2])
