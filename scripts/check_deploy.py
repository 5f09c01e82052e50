"""Checks deploy/ offline, with the tools the deploy venv holds (scripts/python-env.sh deploy):

- the Dockerfile passes hadolint;
- the compose file parses (`docker-compose config`, Debian's, which needs no daemon), and every
  sluice command line in it is accepted by the binary's own parser (`sluice ... --help` with the
  service's environment) and the pipeline it runs loads (`sluice check`);
- the Kubernetes manifests validate against the Kubernetes schemas (kubernetes-validate,
  strict); the kinds they have no schema for (KEDA's ScaledObject, the Prometheus operator's
  ServiceMonitor) are checked for what sluice depends on: the scaler targets the stream's
  StatefulSet and stays within the partition count, the monitor's ports exist; every
  container's command line is accepted as above, and its pipeline loads from its ConfigMap
  laid out as the kubelet would (items and paths); the stream's grace period is above its
  shutdown timeout; the kustomization lists files that exist;
- the Terraform sketch parses (python-hcl2), has what the issue asks of MSK, the bucket and
  Glue, and its IAM policies grant exactly the actions `sluice check` prints for
  examples/sensor.toml (the lists sluice's code keeps), on its topics, group and tables.

Usage: check_deploy.py SLUICE_BINARY  (run by scripts/check-deploy.sh)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# What deploy/ creates the sensor topic with (compose's `topics` service; deploy/README.md).
PARTITIONS = 6
# The ConfigMap `sluice-pipeline` as deploy/README.md creates it: key -> repository file.
CONFIGMAP_SOURCES = {
    "sensor.toml": "examples/sensor.toml",
    "sensor_event.schema.json": "examples/schemas/sensor_event.schema.json",
}
problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print(f"check-deploy: FAIL {text}", file=sys.stderr)


def run(command: list[str], env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def accepted(sluice: str, where: str, args: list[str], env: dict[str, str]) -> None:
    """The binary's parser accepts `args` (with `--help` last, nothing runs)."""
    done = run([sluice, *args, "--help"], env={**os.environ, **env})
    if done.returncode != 0:
        problem(f"{where}: `sluice {' '.join(args)}` is refused: {done.stderr.strip()}")


def pipeline_loads(sluice: str, where: str, args: list[str], env: dict[str, str], mounts: dict[str, Path]) -> None:
    """The pipeline file `args` names (a path in the container) loads, as `sluice check` reads it."""
    if "--pipeline" not in args:
        return
    inside = args[args.index("--pipeline") + 1]
    for target, source in mounts.items():
        if inside.startswith(target + "/"):
            local = source / inside[len(target) + 1 :]
            done = run([sluice, "check", "--pipeline", str(local)], env={**os.environ, **env})
            if done.returncode != 0:
                problem(f"{where}: the pipeline {inside} ({local}) does not load: {done.stderr.strip()}")
            return
    problem(f"{where}: {inside} is not in a volume mounted from the repository")


def check_dockerfile(venv_bin: Path) -> None:
    done = run([str(venv_bin / "hadolint"), str(DEPLOY / "docker/Dockerfile")])
    if done.returncode != 0:
        problem(f"hadolint deploy/docker/Dockerfile:\n{done.stdout}{done.stderr}")


def check_compose(sluice: str) -> None:
    compose = DEPLOY / "compose/compose.yaml"
    done = run(["docker-compose", "-f", str(compose), "config"])
    if done.returncode != 0:
        problem(f"docker-compose config: {done.stderr.strip()}")
        return
    services = yaml.safe_load(done.stdout)["services"]
    sluices = {name: s for name, s in services.items() if s.get("image") == "sluice:local"}
    for wanted in ["topics", "stream-1", "stream-2", "gateway", "producer"]:
        if wanted not in sluices:
            problem(f"compose: no sluice service {wanted}")
    for name, service in sluices.items():
        args = service["command"]
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        accepted(sluice, f"compose service {name}", args, env)
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            mounts[target] = Path(source)
        pipeline_loads(sluice, f"compose service {name}", args, env, mounts)
    streams = [s for s in sluices.values() if s["command"][0] == "stream"]
    ids = [s["command"][s["command"].index("--instance-id") + 1] for s in streams]
    if len(streams) < 2 or len(set(ids)) != len(ids):
        problem(f"compose: expected two or more stream members with distinct instance ids, got {ids}")
    topics = sluices.get("topics", {}).get("command", [])
    if str(PARTITIONS) not in topics:
        problem(f"compose: the topics service does not create {PARTITIONS} partitions: {topics}")


def resources(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def expand(args: list[str]) -> list[str]:
    """Kubernetes' `$(VAR)` references, with a stand-in value."""
    return [re.sub(r"\$\((\w+)\)", lambda m: f"example-{m.group(1).lower()}", a) for a in args]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not match:
        raise ValueError(f"not a duration: {text}")
    value, unit = int(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


def configmap_mounts(spec: dict, container: dict, into: Path) -> dict[str, Path]:
    """The container's ConfigMap volumes laid out under `into` as the kubelet would, their
    files taken from the repository: mount path -> local directory."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        config_map = volumes.get(mount["name"], {}).get("configMap")
        if not config_map:
            continue
        local = into / mount["name"]
        items = config_map.get("items") or [{"key": k, "path": k} for k in CONFIGMAP_SOURCES]
        for item in items:
            source = CONFIGMAP_SOURCES.get(item["key"])
            if source is None:
                problem(f"ConfigMap {config_map['name']}: no repository file for key {item['key']}")
                continue
            target = local / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, target)
        mounts[mount["mountPath"]] = local
    return mounts


def check_kubernetes(venv_bin: Path, sluice: str) -> None:
    folder = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    files = [folder / name for name in kustomization["resources"]]
    for missing in [f for f in files if not f.exists()]:
        problem(f"kustomization.yaml lists {missing.name}, which does not exist")
    files = [f for f in files if f.exists()]
    done = run([str(venv_bin / "kubernetes-validate"), "--strict", "-k", "1.31.0", *map(str, files)])
    if done.returncode != 0 or "ERROR" in done.stdout + done.stderr:
        problem(f"kubernetes-validate:\n{done.stdout}{done.stderr}")
    by_kind: dict[str, list[dict]] = {}
    for path in files:
        for doc in resources(path):
            by_kind.setdefault(doc["kind"], []).append(doc)
    workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])
    for workload in workloads:
        where = f"{workload['kind']} {workload['metadata']['name']}"
        spec = workload["spec"]["template"]["spec"]
        for container in spec["containers"]:
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            accepted(sluice, where, expand(container["args"]), env)
            with tempfile.TemporaryDirectory() as mounted:
                mounts = configmap_mounts(spec, container, Path(mounted))
                pipeline_loads(sluice, where, container["args"], env, mounts)
            if container["args"][0] == "stream":
                timeout = seconds(env.get("SLUICE_SHUTDOWN_TIMEOUT", "25s"))
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= timeout + 5:
                    problem(f"{where}: terminationGracePeriodSeconds {grace} is not above the shutdown timeout {timeout} s")
            for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problem(f"{where}: {probe} asks {got}, expected {path}")
    statefulsets = {s["metadata"]["name"] for s in by_kind.get("StatefulSet", [])}
    for scaler in by_kind.get("ScaledObject", []):
        target = scaler["spec"]["scaleTargetRef"]
        if target.get("kind") != "StatefulSet" or target["name"] not in statefulsets:
            problem(f"ScaledObject {scaler['metadata']['name']} targets {target}, not the stream's StatefulSet")
        if scaler["spec"]["maxReplicaCount"] > PARTITIONS:
            problem(f"ScaledObject scales past the {PARTITIONS} partitions: members beyond hold nothing")
        if "sluice_consumer_lag" not in scaler["spec"]["triggers"][0]["metadata"]["query"]:
            problem("ScaledObject does not scale on sluice_consumer_lag")
    ports = {p["name"] for s in by_kind.get("Service", []) for p in s["spec"]["ports"]}
    for monitor in by_kind.get("ServiceMonitor", []):
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in ports:
                problem(f"ServiceMonitor scrapes port {endpoint['port']}, which no Service has")
    for account in by_kind.get("ServiceAccount", []):
        if "eks.amazonaws.com/role-arn" not in account["metadata"].get("annotations", {}):
            problem(f"ServiceAccount {account['metadata']['name']} has no IAM role annotation")


def unquoted(value):
    """python-hcl2 keeps a string's quotes: "\"x\"" is x."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquoted(v) for v in value]
    return value


def iam_lines(sluice: str) -> dict[str, tuple[list[str], object]]:
    """`sluice check`'s [iam] section for examples/sensor.toml with its lake on S3: key ->
    (actions, what they apply to)."""
    env = {**os.environ, "SLUICE_LAKE": "s3://example-lake/sensor"}
    done = run([sluice, "check", "--pipeline", "examples/sensor.toml"], env=env)
    if done.returncode != 0:
        problem(f"sluice check examples/sensor.toml: {done.stderr.strip()}")
        return {}
    section = done.stdout.split("[iam]", 1)[-1].splitlines()[1:]
    lines = {}
    for line in section:
        match = re.fullmatch(r"(\S+) = (\[.*?\])(?: # (?:on|listing under) (.*))?", line)
        if match:
            on = json.loads(match.group(3)) if match.group(3) else None
            lines[match.group(1)] = (json.loads(match.group(2)), on)
    return lines


def check_terraform(sluice: str) -> None:
    folder = DEPLOY / "terraform"
    parsed = {}
    for path in sorted(folder.glob("*.tf")):
        try:
            parsed[path.name] = hcl2.load(path.open())
        except Exception as error:  # the parser's own exception types vary
            problem(f"terraform/{path.name} does not parse: {error}")
            return
    blocks = lambda kind: [b for doc in parsed.values() for b in doc.get(kind, [])]
    resources = {unquoted(t): {unquoted(n): body for n, body in named.items()}
                 for block in blocks("resource") for t, named in block.items()}
    documents = {unquoted(n): body for block in blocks("data") for t, named in block.items()
                 if unquoted(t) == "aws_iam_policy_document" for n, body in named.items()}
    defaults = {unquoted(n): unquoted(body.get("default")) for block in blocks("variable")
                for n, body in block.items()}
    msk = resources.get("aws_msk_cluster", {}).get("kafka", {})
    sasl = msk.get("client_authentication", [{}])[0].get("sasl", [{}])[0]
    if sasl.get("iam") is not True:
        problem("terraform: the MSK cluster does not authenticate with IAM")
    for kind, what in [
        ("aws_s3_bucket_lifecycle_configuration", "abort_incomplete_multipart_upload"),
        ("aws_s3_bucket_policy", "aws:SecureTransport"),
        ("aws_s3_bucket_versioning", "Disabled"),
        ("aws_glue_catalog_database", "name"),
    ]:
        if what not in json.dumps(resources.get(kind, {})):
            problem(f"terraform: no {kind} with {what}")
    iam = iam_lines(sluice)
    wanted = {
        ("stream", "KafkaCluster"): "stream.kafka_cluster",
        ("stream", "KafkaTopics"): "stream.kafka_topics",
        ("stream", "KafkaGroup"): "stream.kafka_group",
        ("stream", "LakeObjects"): "stream.s3_objects",
        ("stream", "LakeListing"): "stream.s3_bucket",
        ("gateway", "KafkaCluster"): "gateway.kafka_cluster",
        ("gateway", "KafkaTopics"): "gateway.kafka_topics",
    }
    granted = {}
    for role in ["stream", "gateway"]:
        for statement in documents.get(role, {}).get("statement", []):
            granted[(role, unquoted(statement["sid"]))] = sorted(unquoted(statement["actions"]))
    for key, line in wanted.items():
        actions = sorted(iam.get(line, ([], None))[0])
        if granted.get(key) != actions or not actions:
            problem(f"terraform: {key[0]}'s {key[1]} grants {granted.get(key)}; sluice uses {actions} ({line})")
    for extra in set(granted) - set(wanted):
        problem(f"terraform: {extra[0]} grants {granted[extra]} ({extra[1]}), which sluice does not use")
    for variable, line in [("topics", "stream.kafka_topics"), ("gateway_topics", "gateway.kafka_topics"),
                           ("group", "stream.kafka_group")]:
        if iam.get(line, ([], None))[1] != defaults.get(variable):
            problem(f"terraform: variable {variable} defaults to {defaults.get(variable)}; the pipeline has {iam.get(line)}")
    prefixes = [f"example-lake/{defaults.get('lake_prefix')}/{t}" for t in defaults.get("tables") or []]
    if iam.get("stream.s3_objects", ([], None))[1] != prefixes:
        problem(f"terraform: tables {prefixes} are not the pipeline's {iam.get('stream.s3_objects')}")


def main() -> int:
    sluice = sys.argv[1]
    venv_bin = Path(sys.executable).parent
    check_dockerfile(venv_bin)
    check_compose(sluice)
    check_kubernetes(venv_bin, sluice)
    check_terraform(sluice)
    if problems:
        print(f"check-deploy: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-deploy: Dockerfile, compose file, Kubernetes manifests and Terraform check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
