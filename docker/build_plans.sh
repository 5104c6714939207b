#!/usr/bin/env bash
# Build the TensorRT plans of models.yaml in the NGC TensorRT container of the release named
# in docker/versions.env, on this host's GPU, writing plans and manifests into model_repository/.
#   docker/build_plans.sh            # spec models.yaml, output model_repository/
#   SPEC=other.yaml OUT=repo docker/build_plans.sh
# Needs Docker with the NVIDIA container toolkit and the ONNX artifacts (`make models`).
# One run builds for the GPU it runs on: a plan is valid for that compute capability only, so
# run it once on each GPU type listed in GPU_COMPUTE_CAPABILITIES (one repository each).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "${here}")"
# shellcheck source=docker/versions.env
source "${here}/versions.env"

docker build -f "${here}/plan-builder.Dockerfile" -t "${PLAN_BUILDER_IMAGE}" "${root}"
docker run --rm --gpus all \
  --user "$(id -u):$(id -g)" \
  -e SPEC="${SPEC:-models.yaml}" -e OUT="${OUT:-model_repository}" \
  -v "${root}:/work" -w /work \
  "${PLAN_BUILDER_IMAGE}"
