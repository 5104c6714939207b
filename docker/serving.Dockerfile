# Serving image: NVIDIA's Triton container of the release named in docker/versions.env, with
# the tritonkit wheel's runtime part installed (what Python-backend steps import, pinned by
# docker/requirements-serving.txt), a non-root user and an entrypoint with restricted admin
# APIs (docker/entrypoint.sh, docker/triton-server.flags). The model repository is mounted
# read-only at /models; it is not baked into the image.
#
#   docker build -f docker/serving.Dockerfile -t triton-onnx-toolkit/serving:26.03 .

# The tritonkit wheel, built from this checkout (src/ only: no harness, no examples).
FROM nvcr.io/nvidia/tritonserver:26.03-py3 AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM nvcr.io/nvidia/tritonserver:26.03-py3

LABEL org.opencontainers.image.title="triton-onnx-toolkit serving" \
      com.nvidia.ngc.release="26.03"

# Generated model.py files import `tritonkit.runtime`; it comes from site-packages, like any
# package, so the server's working directory does not matter.
COPY docker/requirements-serving.txt docker/install_runtime.sh /opt/triton/
COPY --from=wheel /wheels/ /opt/triton/wheels/
RUN PIP_NO_CACHE_DIR=1 bash /opt/triton/install_runtime.sh /opt/triton/wheels/tritonkit-*.whl \
        /opt/triton/requirements-serving.txt
COPY docker/entrypoint.sh docker/triton-server.flags docker/model_ready.py /opt/triton/

RUN groupadd --system --gid 10001 triton \
    && useradd --system --uid 10001 --gid triton --home-dir /opt/triton --shell /usr/sbin/nologin triton \
    && chmod 0555 /opt/triton/entrypoint.sh /opt/triton/model_ready.py /opt/triton/install_runtime.sh \
    && chmod -R a-w /opt/triton

ENV MODEL_REPOSITORY=/models \
    TRITON_FLAGS_FILE=/opt/triton/triton-server.flags \
    MAX_REQUEST_BYTES=67108864 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/triton
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8000 8001 8002

HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python3", "/opt/triton/model_ready.py", "--url", "http://127.0.0.1:8000"]

ENTRYPOINT ["/opt/triton/entrypoint.sh"]
