# Serving image: NVIDIA's Triton container of the release named in docker/versions.env, with
# the Python-backend dependencies pinned, the project's processing code, a non-root user and
# an entrypoint with restricted admin APIs (docker/entrypoint.sh, docker/triton-server.flags).
# The model repository is mounted read-only at /models; it is not baked into the image.
#
#   docker build -f docker/serving.Dockerfile -t triton-onnx-toolkit/serving:26.03 .
FROM nvcr.io/nvidia/tritonserver:26.03-py3

LABEL org.opencontainers.image.title="triton-onnx-toolkit serving" \
      com.nvidia.ngc.release="26.03"

COPY docker/requirements-serving.txt /opt/triton/requirements-serving.txt
RUN python3 -m pip install --no-cache-dir --break-system-packages \
        -r /opt/triton/requirements-serving.txt

# The Python-backend stub puts its working directory first on sys.path, so model.py files can
# import these packages from /opt/triton/app.
COPY processing/ /opt/triton/app/processing/
COPY triton_adapters/ /opt/triton/app/triton_adapters/
COPY docker/entrypoint.sh docker/triton-server.flags docker/model_ready.py /opt/triton/

RUN groupadd --system --gid 10001 triton \
    && useradd --system --uid 10001 --gid triton --home-dir /opt/triton --shell /usr/sbin/nologin triton \
    && chmod 0555 /opt/triton/entrypoint.sh /opt/triton/model_ready.py \
    && chmod -R a-w /opt/triton

ENV MODEL_REPOSITORY=/models \
    TRITON_FLAGS_FILE=/opt/triton/triton-server.flags \
    MAX_REQUEST_BYTES=67108864 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/triton/app
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8000 8001 8002

HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python3", "/opt/triton/model_ready.py", "--url", "http://127.0.0.1:8000"]

ENTRYPOINT ["/opt/triton/entrypoint.sh"]
