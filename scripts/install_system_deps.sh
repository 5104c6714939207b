#!/usr/bin/env bash
# Debian packages: libb64 for perf_analyzer 2.50.0, wrk as the HTTP load generator of the
# benchmarks (see README).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d' && command -v wrk >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "warning: libb64-0d or wrk is missing and cannot be installed here (needs root and" \
       "apt-get); perf_analyzer and the benchmarks will not run until they are installed" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq libb64-0d wrk >/dev/null
