"""Triton's stock example clients against the example repository, over HTTP and gRPC.

`ensemble_image_client.py` (encoded images to a classification ensemble) and
`image_client.py` (a preprocessed image to a classifier whose input declares its `format`)
of github.com/triton-inference-server/client, src/python/examples: the tests make exactly
their calls (metadata and config checks, the request, class_count on the outputs, and the
parsing of `score:index:label`). Where `TRITON_CLIENT_EXAMPLES` names a folder holding the
two scripts, they also run as shipped.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
import tritonclient.http as httpclient
from PIL import Image

from examples.model_zoo.digits import encoded_split
from tritonkit.build import ReferencePipeline
from tritonkit.server import ServerURLs

pytestmark = pytest.mark.integration

EXAMPLES_ENV = "TRITON_CLIENT_EXAMPLES"
CLASSES = 3


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("digits")
    blobs, _ = encoded_split("test")
    paths = []
    for i, blob in enumerate(blobs[:4]):
        path = folder / f"{i}.png"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def _client(protocol: str, urls: ServerURLs) -> grpcclient.InferenceServerClient:
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(url=urls.grpc_hostport)
    return httpclient.InferenceServerClient(url=urls.http_hostport)


def _parse(result: object) -> list[str]:
    """The stock clients' parsing of one classification element."""
    if isinstance(result, bytes):
        return "".join(chr(x) for x in result).split(":")
    return str(result).split(":")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_image_client_calls(protocol: str, triton: ServerURLs, images: list[Path],
                                     example_repository: Path, digits_labels: list[str]) -> None:
    client = _client(protocol, triton)
    metadata = client.get_model_metadata(model_name="digits")
    config = client.get_model_config(model_name="digits")
    if protocol == "grpc":
        inputs_meta, outputs_meta = metadata.inputs, metadata.outputs
        config_inputs, batch_size = config.config.input, config.config.max_batch_size
        input_name, output_names = inputs_meta[0].name, [o.name for o in outputs_meta]
    else:
        inputs_meta, outputs_meta = metadata["inputs"], metadata["outputs"]
        config_inputs, batch_size = config["input"], config["max_batch_size"]
        input_name, output_names = inputs_meta[0]["name"], [o["name"] for o in outputs_meta]
    assert len(inputs_meta) == 1 and len(config_inputs) == 1  # its parse_model checks
    assert len(images) <= batch_size
    batch = np.stack([np.array([p.read_bytes()], dtype=bytes) for p in images], axis=0)
    module = grpcclient if protocol == "grpc" else httpclient
    infer_input = module.InferInput(input_name, batch.shape, "BYTES")
    if protocol == "grpc":
        infer_input.set_data_from_numpy(batch)
        requested = [module.InferRequestedOutput(n, class_count=CLASSES) for n in output_names]
    else:
        infer_input.set_data_from_numpy(batch, binary_data=True)
        requested = [module.InferRequestedOutput(n, binary_data=True, class_count=CLASSES)
                     for n in output_names]
    result = client.infer("digits", [infer_input], outputs=requested)
    reference = ReferencePipeline(example_repository, "digits")(
        {"IMAGE": np.array([p.read_bytes() for p in images], dtype=object).reshape(-1, 1)})
    for name in output_names:
        answer = result.as_numpy(name)
        assert len(answer) == len(images)
        for row, expected in zip(answer, reference[name], strict=True):
            parsed = [_parse(element) for element in row]
            assert all(len(cls) == 3 for cls in parsed)  # it prints cls[0], cls[1], cls[2]
            top = np.argsort(-expected, kind="stable")[:CLASSES]
            assert [int(cls[1]) for cls in parsed] == top.tolist()
            assert [cls[2] for cls in parsed] == [digits_labels[i] for i in top]


def test_image_client_calls(triton: ServerURLs, images: list[Path],
                            example_repository: Path) -> None:
    """image_client.py's gRPC path (its HTTP path needs the unmaintained attrdict package)."""
    client = grpcclient.InferenceServerClient(url=triton.grpc_hostport)
    metadata = client.get_model_metadata(model_name="digits_classifier")
    config = client.get_model_config(model_name="digits_classifier").config
    # parse_model: one input, one FP32 vector output, a 3-dim input with a declared format
    assert len(metadata.inputs) == len(metadata.outputs) == len(config.input) == 1
    assert metadata.outputs[0].datatype == "FP32"
    assert len(metadata.inputs[0].shape) == 4
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    c, h, w = (int(d) for d in metadata.inputs[0].shape[1:])
    rows = []
    for path in images:  # its preprocess with scaling NONE
        with Image.open(io.BytesIO(path.read_bytes())) as img:
            sample = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        array = np.array(sample)
        array = array[:, :, np.newaxis] if array.ndim == 2 else array
        rows.append(np.transpose(array.astype(np.float32), (2, 0, 1)))
    batch = np.stack(rows, axis=0)
    infer_input = grpcclient.InferInput(metadata.inputs[0].name, list(batch.shape), "FP32")
    infer_input.set_data_from_numpy(batch)
    output = metadata.outputs[0].name
    result = client.infer("digits_classifier", [infer_input],
                          outputs=[grpcclient.InferRequestedOutput(output, class_count=CLASSES)])
    answer = result.as_numpy(output)
    assert answer.shape == (len(images), CLASSES)
    assert all(len(_parse(element)) == 3 for element in answer.ravel())


@pytest.mark.skipif(not os.environ.get(EXAMPLES_ENV),
                    reason=f"{EXAMPLES_ENV} names no folder with Triton's example clients "
                           "(src/python/examples of triton-inference-server/client)")
@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_the_stock_scripts_as_shipped(protocol: str, triton: ServerURLs,
                                      images: list[Path]) -> None:
    folder = Path(os.environ[EXAMPLES_ENV])
    url = triton.grpc_hostport if protocol == "gRPC" else triton.http_hostport
    ensemble = subprocess.run(
        [sys.executable, str(folder / "ensemble_image_client.py"), "-m", "digits", "-c",
         str(CLASSES), "-u", url, "-i", protocol, str(images[0].parent)],
        capture_output=True, text=True, timeout=120, check=False)
    assert ensemble.returncode == 0 and "PASS" in ensemble.stdout, ensemble.stdout
    if protocol == "gRPC":
        single = subprocess.run(
            [sys.executable, str(folder / "image_client.py"), "-m", "digits_classifier", "-c",
             str(CLASSES), "-u", url, "-i", protocol, str(images[0])],
            capture_output=True, text=True, timeout=120, check=False)
        assert single.returncode == 0 and "PASS" in single.stdout, single.stdout
