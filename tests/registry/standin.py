"""A stand-in for a Confluent Schema Registry, for tests only: never shipped with sluice.

No Confluent Schema Registry (a JVM service) or Karapace can be installed here, so this serves
the documented REST endpoints that Confluent's Python serializers and sluice call, on the
standard library alone:

  POST /subjects/{subject}/versions              register (same schema again: same id)
  POST /subjects/{subject}                       look a schema up in a subject
  GET  /schemas/ids/{id}                         a schema by id
  GET  /subjects, /subjects/{subject}/versions   subjects, a subject's versions
  GET  /subjects/{subject}/versions/{n|latest}   one version
  POST /compatibility/subjects/{subject}/versions/{n|latest}
                                                 always compatible (no check is made here)
  GET|PUT /config[/{subject}]                    compatibility level, remembered only

Ids are global and count from 1, as Confluent's do. With --state the registrations are kept in
a JSON file, so a restarted stand-in gives the same ids (a registry outage in a test). With
--user/--password every request needs HTTP Basic auth. On start it prints its port.

  python standin.py [--port 0] [--state FILE] [--user U --password P]
"""

import argparse
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

MEDIA = "application/vnd.schemaregistry.v1+json"


class Registrations:
    """Schemas by id and subjects' versions, saved to `path` after each change."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.schemas = []  # id - 1 -> {"schema", "schemaType", "references"}
        self.subjects = {}  # subject -> [id of version 1, id of version 2, ...]
        self.config = {}
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.schemas, self.subjects = saved["schemas"], saved["subjects"]

    def save(self):
        if self.path:
            with open(self.path + ".partial", "w") as f:
                json.dump({"schemas": self.schemas, "subjects": self.subjects}, f)
            os.replace(self.path + ".partial", self.path)

    def register(self, subject, body):
        entry = {
            "schema": body["schema"],
            "schemaType": body.get("schemaType", "AVRO"),
            "references": body.get("references", []),
        }
        with self.lock:
            if entry in self.schemas:
                schema_id = self.schemas.index(entry) + 1
            else:
                self.schemas.append(entry)
                schema_id = len(self.schemas)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            self.save()
            return schema_id, versions.index(schema_id) + 1

    def version(self, subject, version):
        versions = self.subjects.get(subject)
        if not versions:
            return None
        index = len(versions) - 1 if version == "latest" else int(version) - 1
        if not 0 <= index < len(versions):
            return None
        schema_id = versions[index]
        return {"subject": subject, "version": index + 1, "id": schema_id,
                **self.schemas[schema_id - 1]}


class Handler(BaseHTTPRequestHandler):
    registrations = None
    credentials = None

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", MEDIA)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, code, message):
        self.reply(404, {"error_code": code, "message": message})

    def authorized(self):
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.reply(401, {"error_code": 401, "message": "Unauthorized"})
        return False

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        if not self.authorized():
            return
        path = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
        regs = self.registrations
        if path[:2] == ["schemas", "ids"] and len(path) == 3 and path[2].isdigit():
            schema_id = int(path[2])
            if not 1 <= schema_id <= len(regs.schemas):
                return self.not_found(40403, f"Schema {schema_id} not found")
            found = dict(regs.schemas[schema_id - 1])
            if found["schemaType"] == "AVRO":
                del found["schemaType"]  # as Confluent's registry answers for Avro
            return self.reply(200, found)
        if path == ["subjects"]:
            return self.reply(200, sorted(regs.subjects))
        if path[0] == "subjects" and len(path) == 3 and path[2] == "versions":
            if path[1] not in regs.subjects:
                return self.not_found(40401, f"Subject '{path[1]}' not found.")
            return self.reply(200, list(range(1, len(regs.subjects[path[1]]) + 1)))
        if path[0] == "subjects" and len(path) == 4 and path[2] == "versions":
            found = regs.version(path[1], path[3])
            if found is None:
                return self.not_found(40402, f"Version {path[3]} not found.")
            return self.reply(200, found)
        if path[0] == "config":
            level = regs.config.get(path[1] if len(path) > 1 else "", "BACKWARD")
            return self.reply(200, {"compatibilityLevel": level})
        self.not_found(404, f"no such endpoint: GET {self.path}")

    def do_POST(self):
        if not self.authorized():
            return
        path = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
        body = self.body()
        regs = self.registrations
        if path[0] == "subjects" and len(path) == 3 and path[2] == "versions":
            schema_id, _ = regs.register(path[1], body)
            return self.reply(200, {"id": schema_id})
        if path[0] == "subjects" and len(path) == 2:
            for version, schema_id in enumerate(regs.subjects.get(path[1], []), start=1):
                if regs.schemas[schema_id - 1]["schema"] == body["schema"]:
                    return self.reply(200, regs.version(path[1], version))
            return self.not_found(40403, "Schema not found")
        if path[0] == "compatibility":
            return self.reply(200, {"is_compatible": True})
        self.not_found(404, f"no such endpoint: POST {self.path}")

    def do_PUT(self):
        if not self.authorized():
            return
        path = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
        if path[0] == "config":
            level = self.body()["compatibility"]
            self.registrations.config[path[1] if len(path) > 1 else ""] = level
            return self.reply(200, {"compatibility": level})
        self.not_found(404, f"no such endpoint: PUT {self.path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Handler.registrations = Registrations(args.state)
    if args.user:
        Handler.credentials = f"{args.user}:{args.password}"
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
