"""A stand-in for an Iceberg REST catalog, for tests only: never shipped with sluice.

No Iceberg REST catalog server can be installed here (Polaris, Gravitino and the reference
fixture are JVM services; Lakekeeper needs Postgres and is not on PyPI), so
this serves the endpoints of the REST catalog spec that sluice's client (the iceberg crate's
RestCatalog) and pyiceberg's RestCatalog call. What a commit means is not ours: every request
is answered by pyiceberg's own SqlCatalog over a SQLite file (its requirement checks, its
metadata updates, its optimistic swap of the metadata location):

  GET  /v1/config                                catalog defaults (none)
  POST /v1/oauth/tokens                          OAuth2 client credentials -> bearer token
  GET|POST /v1/namespaces                        list, create
  GET|HEAD /v1/namespaces/{ns}                   load, exists
  GET|POST /v1/namespaces/{ns}/tables            list, create
  GET|HEAD /v1/namespaces/{ns}/tables/{table}    load, exists
  POST /v1/namespaces/{ns}/tables/{table}        commit (409 when a requirement fails)
  GET  /stats                                    (not in the spec) what happened, for tests

With --credential ID:SECRET every request but the token exchange needs a bearer token the
stand-in issued, valid for --token-ttl seconds; an expired one is answered 401, as an identity
provider's token expiring mid-run would be. --db keeps the catalog in a file, so a restarted
stand-in serves the same tables (a catalog outage in a test). On start it prints its port.

  python standin.py --db catalog.db --warehouse s3://lake/wh [--port 0]
                    [--credential id:secret --token-ttl 5]
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from check_iceberg import s3_properties  # noqa: E402

from pyiceberg.exceptions import (  # noqa: E402
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)

NAME = "rest"  # the stand-in's SqlCatalog; engines see only the REST catalog


class Tokens:
    """Bearer tokens issued for the client credentials, each valid for `ttl` seconds."""

    def __init__(self, credential, ttl):
        self.credential, self.ttl = credential, ttl
        self.lock = threading.Lock()
        self.expiry = {}
        self.issued = self.expired = 0

    def issue(self, client_id, client_secret):
        given = f"{client_id}:{client_secret}" if client_id else client_secret
        if given != self.credential:
            return None
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.expiry[token] = time.monotonic() + self.ttl
            self.issued += 1
        return token

    def check(self, header):
        """None when the request may go on, else why not."""
        if self.credential is None:
            return None
        token = header[len("Bearer ") :] if header and header.startswith("Bearer ") else None
        with self.lock:
            expiry = self.expiry.get(token)
            if expiry is None:
                return "no bearer token this catalog issued"
            if time.monotonic() > expiry:
                self.expired += 1
                return "the bearer token expired"
        return None


class Catalog:
    """pyiceberg's SqlCatalog, one request at a time."""

    def __init__(self, db, warehouse):
        from pyiceberg.catalog.sql import SqlCatalog

        self.sql = SqlCatalog(
            NAME, uri=f"sqlite:///{os.path.abspath(db)}", warehouse=warehouse, **s3_properties()
        )
        self.lock = threading.Lock()
        self.commits = self.conflicts = 0


def load_result(table):
    return {
        "metadata-location": table.metadata_location,
        "metadata": json.loads(table.metadata.model_dump_json()),
        "config": {},
    }


def unbound_spec(raw):
    """The partition spec of a create request, with the field ids a client may leave out."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec

    fields = (raw or {}).get("fields", [])
    return PartitionSpec(
        *[
            PartitionField.model_validate(
                {"field-id": 1000 + i, **{k: v for k, v in field.items() if v is not None}}
            )
            for i, field in enumerate(fields)
        ]
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "iceberg-rest-standin/1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, code, kind, message):
        self.reply(code, {"error": {"message": message, "type": kind, "code": code}})

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def route(self):
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:1] != ["v1"] and parts != ["stats"]:
            return self.error(404, "NoSuchEndpoint", f"no endpoint {url.path}")
        if parts == ["stats"]:
            catalog, tokens = self.server.catalog, self.server.tokens
            return self.reply(
                200,
                {
                    "tokens_issued": tokens.issued,
                    "expired_tokens_refused": tokens.expired,
                    "commits": catalog.commits,
                    "conflicts": catalog.conflicts,
                },
            )
        parts = parts[1:]
        if parts == ["oauth", "tokens"] and self.command == "POST":
            return self.token()
        refused = self.server.tokens.check(self.headers.get("Authorization"))
        if refused:
            return self.error(401, "NotAuthorizedException", refused)
        if parts == ["config"]:
            return self.reply(200, {"defaults": {}, "overrides": {}})
        with self.server.catalog.lock:
            return self.catalog_request(parts)

    def token(self):
        form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
        token = self.server.tokens.issue(form.get("client_id"), form.get("client_secret", ""))
        if token is None:
            return self.reply(401, {"error": "invalid_client"})
        self.reply(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.server.tokens.ttl,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
        )

    def catalog_request(self, parts):
        sql = self.server.catalog.sql
        method = self.command
        try:
            if parts == ["namespaces"] and method == "GET":
                return self.reply(200, {"namespaces": [list(n) for n in sql.list_namespaces()]})
            if parts == ["namespaces"] and method == "POST":
                request = json.loads(self.body())
                namespace = tuple(request["namespace"])
                sql.create_namespace(namespace, request.get("properties") or {})
                return self.reply(
                    200, {"namespace": list(namespace), "properties": request.get("properties") or {}}
                )
            if len(parts) == 2 and parts[0] == "namespaces" and method in ("GET", "HEAD"):
                namespace = tuple(parts[1].split("\x1f"))
                properties = sql.load_namespace_properties(namespace)
                if method == "HEAD":
                    return self.reply(204)
                return self.reply(200, {"namespace": list(namespace), "properties": properties})
            if len(parts) == 3 and parts[2] == "tables":
                namespace = tuple(parts[1].split("\x1f"))
                if method == "GET":
                    names = [{"namespace": list(i[:-1]), "name": i[-1]} for i in sql.list_tables(namespace)]
                    return self.reply(200, {"identifiers": names})
                return self.create(namespace, json.loads(self.body()))
            if len(parts) == 4 and parts[2] == "tables":
                identifier = (*parts[1].split("\x1f"), parts[3])
                if method == "HEAD":
                    sql.load_table(identifier)
                    return self.reply(204)
                if method == "GET":
                    return self.reply(200, load_result(sql.load_table(identifier)))
                if method == "POST":
                    return self.commit(identifier, self.body())
        except (NoSuchTableError, NoSuchNamespaceError) as err:
            return self.error(404, type(err).__name__, str(err))
        except (TableAlreadyExistsError, NamespaceAlreadyExistsError) as err:
            return self.error(409, type(err).__name__, str(err))
        return self.error(404, "NoSuchEndpoint", f"no endpoint {method} /v1/{'/'.join(parts)}")

    def create(self, namespace, request):
        from pyiceberg.schema import Schema

        table = self.server.catalog.sql.create_table(
            (*namespace, request["name"]),
            schema=Schema.model_validate(request["schema"]),
            location=request.get("location"),
            partition_spec=unbound_spec(request.get("partition-spec")),
            properties=request.get("properties") or {},
        )
        self.reply(200, load_result(table))

    def commit(self, identifier, body):
        from pyiceberg.table import CommitTableRequest

        catalog = self.server.catalog
        raw = json.loads(body)
        raw.setdefault("identifier", {"namespace": list(identifier[:-1]), "name": identifier[-1]})
        request = CommitTableRequest.model_validate(raw)
        table = catalog.sql.load_table(identifier)
        try:
            response = catalog.sql.commit_table(table, request.requirements, request.updates)
        except CommitFailedException as err:
            catalog.conflicts += 1
            return self.error(409, "CommitFailedException", str(err))
        catalog.commits += 1
        self.reply(
            200,
            {
                "metadata-location": response.metadata_location,
                "metadata": json.loads(response.metadata.model_dump_json()),
            },
        )

    do_GET = do_POST = do_HEAD = route


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--credential")
    parser.add_argument("--token-ttl", type=int, default=3600)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.catalog = Catalog(args.db, args.warehouse)
    server.tokens = Tokens(args.credential, args.token_ttl)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
