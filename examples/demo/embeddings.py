"""Embeddings end to end: cosine against sentence-transformers' own output for the same model,
served over HTTP and gRPC next to the in-process figure."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonkit_client import embed

from examples.demo.protocols import over_protocols
from tritonkit.build import ReferencePipeline
from tritonkit.processing import cosine_similarity
from tritonkit.server import ServerURLs
from tritonkit.spec import BuildSpec

log = logging.getLogger(__name__)

PIPELINE = "embeddings"
TOLERANCE = 1e-5  # served and in-process figures must agree to this
# Sentences that appear nowhere else in the project (not in calibration, holdout or tests).
DEMO_SENTENCES = (
    "The lighthouse keeper wrote letters to nobody in particular.",
    "A sudden hailstorm flattened the barley fields overnight.",
    "Can you recommend a good book about the history of mathematics?",
    "The parliament debated the fishing quota until dawn.",
    "Her grandmother's recipe for plum dumplings was never written down.",
    "Autonomous drones inspected the wind turbines for cracks.",
    "He practised the violin sonata until his fingers ached.",
    "The exchange rate of the yen moved sharply on Tuesday.",
    "Coral reefs are bleaching because the oceans are warming.",
    "Please restart the router and try connecting again.",
    "A tiny hedgehog wandered into the garden shed.",
    "The compiler rejected the program because of a missing semicolon.",
    "Snow leopards are rarely seen in the wild.",
    "We missed the last ferry and slept at the harbour.",
    "Los precios de la vivienda siguen subiendo en la ciudad.",
    "The astronaut described the silence of space as overwhelming.",
)


@dataclass(frozen=True, kw_only=True)
class EmbeddingRun:
    protocol: str
    min_cosine: float
    seconds: float


@dataclass(frozen=True, kw_only=True)
class EmbeddingReport:
    sentences: int
    reference_min_cosine: float
    runs: tuple[EmbeddingRun, ...]

    @property
    def consistent(self) -> bool:
        return all(abs(r.min_cosine - self.reference_min_cosine) <= TOLERANCE for r in self.runs)


def sentence_transformers_embeddings(texts: Sequence[str],
                                     model_dir: Path | None = None) -> np.ndarray:
    """sentence-transformers' own embeddings (normalised) for the example model, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415 -- heavy

    from examples.model_zoo.text_encoder import default_model_dir  # noqa: PLC0415

    model = SentenceTransformer(str(model_dir or default_model_dir()), device="cpu",
                                local_files_only=True)
    return np.asarray(model.encode(list(texts), normalize_embeddings=True,
                                   convert_to_numpy=True), dtype=np.float32)


def reference_embeddings(repository: Path, spec: BuildSpec, texts: Sequence[str]) -> np.ndarray:
    """The same step functions and ONNX model, run in this process."""
    pipeline = ReferencePipeline(repository, PIPELINE,
                                 onnx_models={m.name: m.onnx for m in spec.models})
    tensor = np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(-1, 1)
    return np.asarray(pipeline({"TEXT": tensor})["EMBEDDING"])


def run_embeddings(repository: Path, spec: BuildSpec, urls: ServerURLs, *,
                   texts: Sequence[str] = DEMO_SENTENCES) -> EmbeddingReport:
    expected = sentence_transformers_embeddings(texts)
    in_process = reference_embeddings(repository, spec, texts)
    reference = float(cosine_similarity(in_process, expected).min())
    runs = [EmbeddingRun(protocol=protocol, seconds=seconds,
                         min_cosine=float(cosine_similarity(vectors, expected).min()))
            for protocol, vectors, seconds in over_protocols(
                urls, PIPELINE, lambda client: embed(client, PIPELINE, list(texts)))]
    return EmbeddingReport(sentences=len(texts), reference_min_cosine=reference,
                           runs=tuple(runs))
