#!/usr/bin/env bash
# Installs what the Python-backend steps import into the serving Python: the tritonkit wheel's
# runtime part (tritonkit.runtime, tritonkit.processing; no build dependencies) with the pins of
# requirements-serving.txt. docker/serving.Dockerfile runs it, and so does the
# container-equivalent test (tests/integration/test_serving_image_contract.py): one command.
#
#   install_runtime.sh WHEEL REQUIREMENTS     (python3 on PATH is the serving Python)
set -euo pipefail

wheel="$(realpath "$1")"
requirements="$2"
python3 -m pip install --break-system-packages --disable-pip-version-check \
  -c "${requirements}" -r "${requirements}" "tritonkit[runtime] @ file://${wheel}"
