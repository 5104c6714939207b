#!/usr/bin/env bash
# Entrypoint of the serving image: tritonserver on the read-only model repository with the
# flags of /opt/triton/triton-server.flags (restricted admin APIs, fixed repository, strict
# readiness) plus an explicit HTTP request size limit.
#
# Environment:
#   MODEL_REPOSITORY     read-only model repository (default /models)
#   TRITON_ADMIN_KEY     value of the `triton-admin-key` header that unlocks the restricted
#                        APIs; unset -> a random key nobody knows (APIs locked)
#   MAX_REQUEST_BYTES    largest accepted HTTP request body (default 67108864 = 64 MiB).
#                        Triton 2.51 has no flag for it; newer servers have
#                        --http-max-input-size, which is passed when the binary lists it. The
#                        gateway (nginx client_max_body_size) enforces the same limit for HTTP
#                        and gRPC in every deployment this project ships.
# Extra arguments are appended to the tritonserver command line.
set -euo pipefail

repository="${MODEL_REPOSITORY:-/models}"
flags_file="${TRITON_FLAGS_FILE:-/opt/triton/triton-server.flags}"
max_request_bytes="${MAX_REQUEST_BYTES:-67108864}"
admin_key="${TRITON_ADMIN_KEY:-}"
if [ -z "${admin_key}" ]; then
  admin_key="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
case "${admin_key}" in
  *[!A-Za-z0-9_-]*) echo "TRITON_ADMIN_KEY may hold only letters, digits, '-' and '_'" >&2
                    exit 2 ;;
esac

args=()
while IFS= read -r line || [ -n "${line}" ]; do
  case "${line}" in ''|'#'*) continue ;; esac
  args+=("${line//@ADMIN_KEY@/${admin_key}}")
done < "${flags_file}"

if tritonserver --help 2>&1 | grep -q -- '--http-max-input-size'; then
  args+=("--http-max-input-size=${max_request_bytes}")
fi

exec tritonserver --model-repository="${repository}" "${args[@]}" "$@"
