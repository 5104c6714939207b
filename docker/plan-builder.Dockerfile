# Plan-building image: NVIDIA's TensorRT container of the SAME release as the serving image
# (docker/versions.env), so the plans it writes load in nvcr.io/nvidia/tritonserver:26.03-py3.
# It runs `tritonkit build --target tensorrt`, which writes model.plan plus a
# manifest.json (TensorRT version, GPU and compute capability, reproduce command) into every
# TensorRT version directory of model_repository/, then lints the result against the release.
# Use docker/build_plans.sh, which mounts the working tree and runs this as your own user.
FROM nvcr.io/nvidia/tensorrt:26.03-py3

LABEL org.opencontainers.image.title="triton-onnx-toolkit plan builder" \
      com.nvidia.ngc.release="26.03"

# tritonkit itself, from this checkout's src/ (the mounted working tree holds only the spec,
# the ONNX models and the repository being written).
COPY docker/requirements-plan-builder.txt /opt/plan-builder/requirements.txt
COPY pyproject.toml README.md /opt/plan-builder/tritonkit/
COPY src/ /opt/plan-builder/tritonkit/src/
RUN python3 -m pip install --no-cache-dir --break-system-packages \
        -c /opt/plan-builder/requirements.txt -r /opt/plan-builder/requirements.txt \
        "/opt/plan-builder/tritonkit[build,runtime]"

RUN groupadd --system --gid 10001 builder \
    && useradd --system --uid 10001 --gid builder --home-dir /work --shell /usr/sbin/nologin builder

ENV NGC_RELEASE=26.03 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /work
USER 10001:10001

ENTRYPOINT ["/bin/bash", "-c", "tritonkit build --spec \"${SPEC:-models.yaml}\" --target tensorrt --out \"${OUT:-model_repository}\" && tritonkit lint \"${OUT:-model_repository}\" --release \"${NGC_RELEASE}\""]
