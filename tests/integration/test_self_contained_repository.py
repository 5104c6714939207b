"""A built repository serves from anywhere: copied out of the checkout, read-only, any cwd.

This is the serving image's layout (docker/serving.Dockerfile, docker/compose.yaml): the
repository copied elsewhere and mounted read-only, `processing/` and `triton_adapters/` copied
into an app folder that is the server's working directory (the stub's `sys.path` starts with
it, so these copies are the ones imported). The embeddings pipeline must answer exactly as the
in-process reference does, over HTTP and gRPC; and a repository whose tokenizer asset is gone
must fail to LOAD the tokenizer step, with the reason, while the server stays up and serves
the rest.

Its own servers (explicit model control, only the text models): the session server serves the
repository where it was built, from the launcher's default working directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from build_scripts.lint import lint_repository
from build_scripts.local_server.local_triton import LocalTriton, find_orphans
from build_scripts.reference_runner import ReferencePipeline
from clients import connect, embed

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "embeddings"
TOKENIZER_STEP = "text_tokenize"
STARTUP_TIMEOUT_S = 180
SENTENCES = [
    "A lighthouse keeper counted the ships passing at dawn.",
    "",
    "words " * 400,  # truncated to max_length by the served tokenizer, as in-process
    "Wie spät ist es in Reykjavík?",
]


@dataclass(frozen=True, kw_only=True)
class ServedElsewhere:
    server: LocalTriton
    repository: Path
    working_dir: Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash (directories marked), to prove nothing
    was written, as permission bits do not stop root. Python's byte-code caches are left out:
    the stub writes them where it may (as root, even here) and does without them on a real
    read-only mount (the serving image also sets PYTHONDONTWRITEBYTECODE)."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if "__pycache__" not in p.parts}


def set_writable(root: Path, writable: bool) -> None:
    write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~write)


@pytest.fixture(scope="module")
def served_elsewhere(example_repository: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedElsewhere]:
    root = tmp_path_factory.mktemp("elsewhere")
    repository = root / "models"
    shutil.copytree(example_repository, repository)
    set_writable(repository, False)
    working_dir = root / "app"  # the image's app folder: the packages, copied, and nothing else
    for package in ("processing", "triton_adapters"):
        shutil.copytree(REPO_ROOT / package, working_dir / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    before = tree_digest(repository)
    server = LocalTriton(repository, working_dir=working_dir, model_control="explicit",
                         load_models=[PIPELINE], log_path=root / "tritonserver.log",
                         startup_timeout_s=STARTUP_TIMEOUT_S)
    try:
        with server:
            yield ServedElsewhere(server=server, repository=repository,
                                  working_dir=working_dir)
        assert tree_digest(repository) == before, "serving wrote into the repository"
        assert not find_orphans(instance_id=server.instance_id)
    finally:
        set_writable(repository, True)  # so that pytest can remove it


@pytest.fixture(scope="module")
def reference_vectors(served_elsewhere: ServedElsewhere) -> np.ndarray:
    """The in-process reference, run from the same read-only copy (it needs no checkout)."""
    texts = np.array([t.encode() for t in SENTENCES], dtype=object).reshape(-1, 1)
    outputs = ReferencePipeline(served_elsewhere.repository, PIPELINE)({"TEXT": texts})
    return np.asarray(outputs["EMBEDDING"])


def test_the_repository_and_the_server_are_outside_the_checkout(
        served_elsewhere: ServedElsewhere) -> None:
    repository, server = served_elsewhere.repository, served_elsewhere.server
    assert not repository.resolve().is_relative_to(REPO_ROOT)
    cwd = Path(os.readlink(f"/proc/{server.pid}/cwd"))
    assert cwd == served_elsewhere.working_dir.resolve()
    assert not cwd.is_relative_to(REPO_ROOT)
    assert lint_repository(repository) == []  # no config names a path outside it
    tokenizer = repository / TOKENIZER_STEP / "assets" / "tokenizer" / "tokenizer.json"
    assert tokenizer.is_file()
    assert not stat.S_IMODE(tokenizer.stat().st_mode) & stat.S_IWUSR
    index = {e.name: e.state for e in server.repository_index()}
    assert index[TOKENIZER_STEP] == index[PIPELINE] == "READY"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_embeddings_equal_the_in_process_reference(served_elsewhere: ServedElsewhere,
                                                   reference_vectors: np.ndarray,
                                                   protocol: str) -> None:
    urls = served_elsewhere.server.urls
    with connect(urls.http if protocol == "http" else urls.grpc, timeout_s=60) as client:
        vectors = embed(client, PIPELINE, SENTENCES)
    assert vectors.shape == reference_vectors.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(vectors, reference_vectors, rtol=0, atol=1e-5)


def test_missing_tokenizer_fails_the_load_and_the_server_stays_up(
        example_repository: Path, tmp_path: Path) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repository = tmp_path / "models"
    for name in (TOKENIZER_STEP, "text_pool"):
        shutil.copytree(example_repository / name, repository / name)
    missing = repository / TOKENIZER_STEP / "assets" / "tokenizer" / "tokenizer.json"
    missing.unlink()
    working_dir = tmp_path / "app"
    working_dir.mkdir()
    server = LocalTriton(repository, working_dir=working_dir, model_control="explicit",
                         load_models=["text_pool"], log_path=tmp_path / "tritonserver.log",
                         startup_timeout_s=STARTUP_TIMEOUT_S)
    with server:
        client = httpclient.InferenceServerClient(server.urls.http_hostport)
        with pytest.raises(InferenceServerException) as info:
            client.load_model(TOKENIZER_STEP)
        reason = str(info.value)
        for expected in ("TokenizerLoadError", "tokenizer_dir",
                         f"{TOKENIZER_STEP}/assets/tokenizer/tokenizer.json", "not found"):
            assert expected in reason
        index = {e.name: e for e in server.repository_index()}
        assert index[TOKENIZER_STEP].state == "UNAVAILABLE"
        assert "tokenizer.json not found" in (index[TOKENIZER_STEP].reason or "")
        assert not client.is_model_ready(TOKENIZER_STEP)
        # the server is up and serves the models that did load
        assert server.is_running() and client.is_server_live()
        with connect(server.urls.grpc, timeout_s=60) as typed:
            pooled = typed.infer("text_pool", {
                "HIDDEN": np.ones((1, 3, 384), dtype=np.float32),
                "ATTENTION_MASK": np.ones((1, 3), dtype=np.int64)})
        np.testing.assert_allclose(np.linalg.norm(pooled["EMBEDDING"], axis=1), 1.0, rtol=1e-5)
        client.close()
    assert not find_orphans(instance_id=server.instance_id)
