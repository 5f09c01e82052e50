#!/usr/bin/env bash
# Checks deploy/ offline (scripts/check_deploy.py): hadolint on the Dockerfile, `docker-compose
# config` and kubernetes-validate on the manifests, and every sluice command line in them
# parsed by this build's binary; then an image of the binary built and run with buildah
# (scripts/image-check.sh). Installs its venv once (scripts/python-env.sh deploy, cached).
# Needs Debian's docker-compose and buildah (.ci/run installs them).
#   scripts/check-deploy.sh [SLUICE_BINARY]   # default: the debug build in the shared target dir
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/python-env.sh deploy >/dev/null
sluice="${1:-$CARGO_TARGET_DIR/debug/sluice}"
[ -x "$sluice" ] || cargo build --locked -p sluice --bin sluice
"$SLUICE_DEPLOY_PYTHON" scripts/check_deploy.py "$sluice"
scripts/image-check.sh "$sluice"
