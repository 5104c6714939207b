# Plan-building image: NVIDIA's TensorRT container of the SAME release as the serving image
# (docker/versions.env), so the plans it writes load in nvcr.io/nvidia/tritonserver:26.03-py3.
# It runs `python -m build_scripts build --target tensorrt`, which writes model.plan plus a
# manifest.json (TensorRT version, GPU and compute capability, reproduce command) into every
# TensorRT version directory of model_repository/, then lints the result against the release.
# Use docker/build_plans.sh, which mounts the working tree and runs this as your own user.
FROM nvcr.io/nvidia/tensorrt:26.03-py3

LABEL org.opencontainers.image.title="triton-onnx-toolkit plan builder" \
      com.nvidia.ngc.release="26.03"

COPY docker/requirements-plan-builder.txt /opt/plan-builder/requirements.txt
RUN python3 -m pip install --no-cache-dir --break-system-packages \
        -r /opt/plan-builder/requirements.txt

RUN groupadd --system --gid 10001 builder \
    && useradd --system --uid 10001 --gid builder --home-dir /work --shell /usr/sbin/nologin builder

ENV NGC_RELEASE=26.03 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /work
USER 10001:10001

ENTRYPOINT ["/bin/bash", "-c", "python3 -m build_scripts build --spec \"${SPEC:-models.yaml}\" --target tensorrt --out \"${OUT:-model_repository}\" && python3 -m build_scripts lint \"${OUT:-model_repository}\" --release \"${NGC_RELEASE}\""]
