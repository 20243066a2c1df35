"""Shared fixtures: headless Qt, tiny configs, and the seed corpus."""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playground.engine.config import ModelConfig, TrainConfig  # noqa: E402
from playground.engine.data.corpus import build_corpus, builtin_text

PHRASE = "to be or not to be that is the question"


@pytest.fixture
def tiny_model_cfg():
    return ModelConfig(vocab_size=13, n_layer=1, n_head=2, n_embd=16, block_size=8)


@pytest.fixture
def tiny_train_cfg():
    return TrainConfig(batch_size=8, max_steps=30, learning_rate=1e-2, min_lr=1e-2,
                       eval_interval=10, eval_batches=2, sample_chars=10, threads=1)


@pytest.fixture
def phrase_corpus():
    return build_corpus("phrase", builtin_text("phrase"), 0.1, 8)


@pytest.fixture(autouse=True, scope="session")
def _downloads_in_a_temporary_folder(tmp_path_factory):
    """Nothing a test downloads lands in the user's data folder (module and session fixtures
    included)."""
    from playground.engine.data.download import DATA_ENV
    os.environ[DATA_ENV] = str(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _nothing_downloaded_yet(tmp_path_factory, monkeypatch):
    """Nor in the next test's: each test starts with nothing downloaded, whichever tests ran
    before it in its worker process."""
    from playground.engine.data.download import DATA_ENV
    monkeypatch.setenv(DATA_ENV, str(tmp_path_factory.mktemp("data")))


@pytest.fixture(autouse=True)
def _estimates_at_the_fitted_rate():
    """Each test starts and ends with estimates at the fitted matmul rate: a calibration (the
    window's warm-up measures the machine) must not carry from one test into the next."""
    from playground.engine.training.estimate import forget_calibration
    forget_calibration()
    yield
    forget_calibration()


@pytest.fixture(scope="module")
def server():
    """A real HTTP server on 127.0.0.1, on a free port, serving tests/fileserver.py's files."""
    import http.server
    import threading

    from tests.fileserver import Handler
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture(scope="session")
def seed_model():
    """The seed preset, trained once for the session: it has the repeated phrase by heart.
    Shared read-only (evaluation and serving tests); returns (model, tokenizer)."""
    from playground.engine.presets import PRESETS
    from playground.engine.training.trainer import Trainer
    preset = PRESETS["seed"]
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, preset.model.block_size)
    trainer = Trainer(preset.model, preset.train.replace(sample_chars=0, threads=1), corpus)
    list(trainer.run())
    return trainer.model.eval(), corpus.tokenizer
