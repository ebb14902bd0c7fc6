import os
from collections.abc import Mapping
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests of the needs_data switch run pytest on a file of their own

ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "RETRIEVAL_LAB_DATA"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
TINY_BERT = ROOT / "tests" / "fixtures" / "models" / "tiny-bert"
TINY_T5 = ROOT / "tests" / "fixtures" / "models" / "tiny-t5"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_root(env: Mapping[str, str] = os.environ, default: Path = DEFAULT_DATA) -> Path:
    """The datasets folder: $RETRIEVAL_LAB_DATA when set (and not empty), else ../shared/datasets."""
    return Path(env[DATA_ENV]) if env.get(DATA_ENV) else default


DATA = data_root()  # where the real collections are read from, in every test file


def data_decision(name: str, env: Mapping[str, str] = os.environ, default: Path = DEFAULT_DATA) -> tuple[str, str]:
    """What a test needing the real collection `name` does: ("run", path), ("skip", reason) or ("fail", message).

    RETRIEVAL_LAB_DATA set (CI and the Makefile set it): the collection must be there, so a missing folder is a
    failure naming the path, not a silent skip. Unset: the default ../shared/datasets is tried and the test is
    skipped when the collection is not there (a checkout without the datasets).
    """
    if env.get(DATA_ENV):
        path = Path(env[DATA_ENV]) / name
        if path.is_dir():
            return "run", str(path)
        return "fail", (f"real collection {name!r} not found: {path} is not a folder "
                        f"({DATA_ENV}={env[DATA_ENV]} is set, so the collection must be under it)")
    path = default / name
    if path.is_dir():
        return "run", str(path)
    return "skip", (f"real collection {name!r} not found at {path} ({DATA_ENV} is not set): "
                    "set it to the datasets folder")


def needs_data(name: str):
    """Mark a test (or a pytest.param) as needing the real collection `name` under DATA: run when it is there,
    skip when it is not and RETRIEVAL_LAB_DATA is unset, fail when RETRIEVAL_LAB_DATA is set (see data_decision)."""
    return pytest.mark.needs_data(name)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data(name): needs the real collection `name` under $RETRIEVAL_LAB_DATA")


_DATA_DECISIONS = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # decided once, before any fixture is built (a fixture or the test may change the environment later);
    # a skip happens here, a failure in the call phase so that it reports as FAILED, not as a setup ERROR
    decisions = [data_decision(mark.args[0]) for mark in item.iter_markers("needs_data")]
    item.stash[_DATA_DECISIONS] = decisions
    for action, message in decisions:
        if action == "skip":
            pytest.skip(message)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    for action, message in item.stash.get(_DATA_DECISIONS, []):
        if action == "fail":
            pytest.fail(message, pytrace=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("RETRIEVAL_LAB_CACHE", str(path))
    return path


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a gloo process group's rendezvous)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
