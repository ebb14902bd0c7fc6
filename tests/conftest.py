import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RETRIEVAL_LAB_DATA", ROOT.parent / "shared" / "datasets"))
TINY_BERT = ROOT / "tests" / "fixtures" / "models" / "tiny-bert"
TINY_T5 = ROOT / "tests" / "fixtures" / "models" / "tiny-t5"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def needs_data(name: str):
    """Skip unless the real collection `name` is under $RETRIEVAL_LAB_DATA (../shared/datasets by default)."""
    return pytest.mark.skipif(
        not (DATA / name).is_dir(), reason=f"{DATA / name} not found: set RETRIEVAL_LAB_DATA to the datasets folder"
    )


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("RETRIEVAL_LAB_CACHE", str(path))
    return path
