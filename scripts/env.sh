# Sourced by the scripts under scripts/: where the shared caches live and which versions are pinned.
# Everything heavy lives under $HOME/.cache so that clones (and CI's fresh clone) share it.
SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
SLUICE_TOOLS="$SLUICE_CACHE/tools"
S3S_FS_VERSION=0.14.1
S3S_FS_BIN="$SLUICE_TOOLS/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs"
# The venv made by scripts/python-env.sh (deltalake, pyarrow, duckdb) for scripts/check_delta.py.
SLUICE_PYTHON="$SLUICE_CACHE/venv/bin/python"
# The venv of the deploy checks (scripts/check_deploy.py): hadolint, kubernetes-validate.
SLUICE_DEPLOY_PYTHON="$SLUICE_CACHE/deploy-venv/bin/python"
# Real Airflow, for the e2e test of deploy/airflow's DAGs.
SLUICE_AIRFLOW="$SLUICE_CACHE/airflow-venv/bin/airflow"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}"
# The binary whose `sluice broker` serves Kafka to the tests (the broker is tansu, embedded;
# its version is pinned in Cargo.toml).
SLUICE_BROKER_BIN="${SLUICE_BIN:-$CARGO_TARGET_DIR/debug/sluice}"
# Selenium, for the console's browser test (with Debian's chromium and chromedriver).
SLUICE_BROWSER_PYTHON="$SLUICE_CACHE/browser-venv/bin/python"
export SLUICE_CACHE SLUICE_TOOLS S3S_FS_BIN SLUICE_PYTHON SLUICE_DEPLOY_PYTHON SLUICE_AIRFLOW
# moto (the stand-in for AWS Glue) and pyiceberg's GlueCatalog.
SLUICE_GLUE_PYTHON="$SLUICE_CACHE/glue-venv/bin/python"
export SLUICE_BROWSER_PYTHON SLUICE_GLUE_PYTHON
export SLUICE_BROKER_BIN
