#!/usr/bin/env bash
# Debian packages: libb64 for perf_analyzer 2.50.0, hey as the HTTP load generator of the
# benchmarks (see README), gcc for the BYTES batch guard the builder compiles
# (src/tritonkit/build/batch_guard.py), cmake, g++, make and rapidjson-dev for Triton's ONNX
# Runtime backend (`tritonkit build-backend`).
set -euo pipefail
# Deployment checks and scale-out (issue 7): nginx-light (the load balancer of `make scaleout`),
# docker-compose 1.29 (`docker-compose config` validates docker/compose.yaml; no engine needed),
# kubernetes-client (kubectl for `kubectl kustomize`; only when no kubectl is installed).
if ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d' && command -v hey >/dev/null \
   && { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } \
   && command -v docker-compose >/dev/null && command -v kubectl >/dev/null \
   && command -v cc >/dev/null && command -v cmake >/dev/null && command -v g++ >/dev/null \
   && command -v make >/dev/null && test -f /usr/include/rapidjson/document.h; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "warning: libb64-0d, hey, nginx, docker-compose, kubectl, cmake, g++ or rapidjson-dev is missing and cannot be installed here (needs root and" \
       "apt-get); perf_analyzer and the benchmarks will not run until they are installed" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq libb64-0d hey gcc >/dev/null
apt-get install -y -qq --no-install-recommends cmake g++ make rapidjson-dev >/dev/null
apt-get install -y -qq --no-install-recommends nginx-light docker-compose >/dev/null
command -v kubectl >/dev/null || apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
