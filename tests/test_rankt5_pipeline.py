"""RankT5 / monoT5 through the real entry point: the presets, the start-up check of a missing t5-base, the user's
headline command `python run.py retriever=colbert reranker=rankt5 loss=poly1` end to end with tiny models, and the
sweep over rerankers x losses that trains ColBERT once."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from retrieval_lab.config import ConfigError, register, validate_config
from retrieval_lab.data import read_trec_run
from retrieval_lab.models.registry import load_family
from tests.conftest import ROOT, TINY_BERT, TINY_T5

register()

HEADLINE = ["retriever=colbert", "reranker=rankt5", "loss=poly1"]
TINY = [f"retriever.model={TINY_BERT}", f"reranker.model={TINY_T5}"]


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_py(tmp_path, *args, name="run", env=None, timeout=1200):
    out = tmp_path / name
    result = subprocess.run([sys.executable, "run.py", *args, f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    return out, result


def test_the_presets_say_what_the_paper_does():
    c = cfg(*HEADLINE)
    r = c.reranker
    assert (r.family, r.name, r.variant, r.model, r.max_length, r.score_token) == \
        ("rankt5", "rankt5", "encdec", "t5-base", 128, "<extra_id_10>")
    t = r.train
    assert (t.enabled, t.list_size, t.sample_depth, t.lr, t.schedule, t.warmup_steps) == \
        (True, 36, 1000, 1e-4, "constant", 0)
    assert c.loss.name == "poly1" and c.loss.epsilon == 1.0 and r.train.loss is None  # the loss group trains it
    assert cfg("reranker=rankt5", "reranker.variant=enc").reranker.variant == "enc"
    assert (cfg("reranker=rankt5_enc").reranker.variant, cfg("reranker=rankt5_enc").reranker.name) == ("enc", "rankt5_enc")
    assert cfg("reranker=rankt5_encdec").reranker.variant == "encdec"
    mono = cfg("reranker=monot5").reranker
    assert (mono.family, mono.max_length, mono.train.lr, mono.train.list_size) == ("monot5", 128, 1e-4, 36)
    validate_config(c)  # a valid config


@pytest.mark.parametrize("override,message", [
    ("reranker.variant=encoder", "`reranker.variant=encoder`: one of ['encdec', 'enc']"),
    ("reranker.pooling=max", "`reranker.pooling=max`: one of ['first', 'mean']"),
    ("reranker.max_length=4", "`reranker.max_length=4`: must be >= 8"),
    ("reranker.train.micro_batch_size=0", "`reranker.train.micro_batch_size=0`: must be >= 1"),
])
def test_bad_rankt5_settings_fail_at_start_up_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        validate_config(cfg(*HEADLINE, override))
    assert message in str(error.value)


def test_without_t5_base_the_headline_fails_at_start_up_naming_reranker_model(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    start = time.perf_counter()
    out, result = run_py(tmp_path, *HEADLINE, "logger=none", env=env)
    elapsed = time.perf_counter() - start
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: `reranker.model=t5-base`: not a local folder") and \
        "reranker.model=/path/to/folder" in error, result.stderr[-2000:]
    # before anything ran: no ColBERT training, no cache; the check is before any heavy import (measured ~1 s)
    assert not (out / "train_retriever").exists() and not (tmp_path / "cache").exists()
    assert elapsed < 30, elapsed


def _check_headline(out, stdout):
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["baseline:bm25", "colbert", "colbert>>rankt5@100"]  # side by side with the baseline
    assert stdout.rstrip().splitlines()[-1].startswith("outputs: ")  # the table is the last thing printed
    assert "colbert>>rankt5@100" in stdout
    folder = Path((out / "train_reranker_model.txt").read_text().strip())  # the trained model, in the cache
    record = json.loads((folder / "training.json").read_text())
    assert record["loss"] == {"name": "poly1", "epsilon": 1.0}
    assert record["negatives"]["from"] == "colbert"  # RankT5 trains on ColBERT's negatives
    assert record["train"]["list_size"] == 36 and record["train"]["schedule"] == "constant"
    model = load_family(folder, "reranker")
    assert type(model).__name__ == "RankT5" and model.variant == "encdec"
    first = read_trec_run(out / "runs" / "colbert.trec")
    second = read_trec_run(out / "runs" / "colbert__rankt5_at100.trec")
    for qid, docs in first.items():  # the top 100 re-ordered, the rest kept below in order
        top = sorted(docs, key=docs.get, reverse=True)
        new = sorted(second[qid], key=second[qid].get, reverse=True)
        assert set(new[:100]) == set(top[:100]) and new[100:] == top[100:]


def test_the_headline_command_runs_end_to_end_with_tiny_models(tmp_path):
    out, result = run_py(tmp_path, *HEADLINE, *TINY, "retriever.train.max_steps=4", "reranker.train.max_steps=4",
                         "reranker.train.batch_size=2", "logger=none", "show_progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    _check_headline(out, result.stdout)
    assert (out / "train_retriever" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "train_reranker" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_the_exact_headline_command_with_tiny_models_and_the_presets_budgets(tmp_path):
    """Exactly what the user types, plus the two tiny models (~3 min here): ColBERT's 120 steps, RankT5's 300."""
    out, result = run_py(tmp_path, *HEADLINE, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_headline(out, result.stdout)
    assert list((out / "wandb").glob("offline-run-*"))  # logged to W&B (offline without a key)


@pytest.mark.slow
def test_the_sweep_trains_colbert_once_and_each_reranker_once_per_loss(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "run.py", "-m", "retriever=colbert", "reranker=rankt5_enc,rankt5_encdec,monot5",
         "loss=softmax,poly1", *TINY, "retriever.train.max_steps=4", "reranker.train.max_steps=4",
         "reranker.train.batch_size=2", "logger=none", "show_progress=false", f"hydra.sweep.dir={sweep}",
         f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 6
    logs = [(j / "run.log").read_text() for j in jobs]
    assert sum("train_retriever: trained model" in text for text in logs) == 1
    assert sum("train_retriever: reusing the model" in text for text in logs) == 5
    retrievers = {(j / "train_retriever_model.txt").read_text() for j in jobs}
    rerankers = {(j / "train_reranker_model.txt").read_text() for j in jobs}
    assert len(retrievers) == 1 and len(rerankers) == 6  # one ColBERT; a reranker per (family, loss)
    stages = {list(json.loads((j / "metrics.json").read_text()))[-1] for j in jobs}
    assert stages == {"colbert>>rankt5_enc@100", "colbert>>rankt5_encdec@100", "colbert>>monot5@100"}


def _fake_job(folder, reranker, loss, per_query, metrics=("mrr@10", "ndcg@5", "ndcg@10", "map")):
    """A finished job folder as the pipeline writes it (config.yaml, metrics.json, per_query.tsv, overrides)."""
    import yaml

    family, variant = {"monot5": ("monot5", None), "rankt5_encdec": ("rankt5", "encdec"),
                       "rankt5_enc": ("rankt5", "enc")}[reranker]
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"reranker={reranker}", f"loss={loss}"]))
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"reranker": {"name": reranker, "family": family, "variant": variant, "train": {"loss": None}},
         "loss": {"name": loss}}))
    stage = f"bm25>>{reranker}@1000"
    agg = {m: sum(per_query[m].values()) / len(per_query[m]) for m in metrics}
    (folder / "metrics.json").write_text(json.dumps({"bm25": agg, stage: agg}))
    lines = ["stage\tmetric\tqid\tvalue"] + [f"{stage}\t{m}\t{q}\t{v}" for m in metrics for q, v in per_query[m].items()]
    (folder / "per_query.tsv").write_text("\n".join(lines) + "\n")


def test_the_table1_layout_with_daggers_from_paired_tests_by_hand(tmp_path):
    import numpy as np
    from scipy.stats import ttest_rel

    from retrieval_lab.evaluation.sweep import model_loss_table

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 30)
    qs = [f"q{i}" for i in range(30)]
    shifts = {("monot5", "pointwise_ce"): 0.0, ("rankt5_encdec", "poly1"): 0.08, ("rankt5_enc", "softmax"): 0.01,
              ("rankt5_encdec", "pairwise_logistic"): -0.08}
    values = {}
    for i, ((reranker, loss), shift) in enumerate(shifts.items()):
        v = np.clip(base + shift + rng.normal(0, 0.05, 30), 0, 1)
        values[(reranker, loss)] = v
        _fake_job(tmp_path / "sweep" / str(i), reranker, loss, {m: dict(zip(qs, v)) for m in
                                                                 ("mrr@10", "ndcg@5", "ndcg@10", "map")})
    text = model_loss_table(tmp_path / "sweep")
    rows = {line.split("|")[1].strip() + "/" + line.split("|")[2].strip(): line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Model")}
    assert list(rows) == ["monoT5/Generation (true/false)", "RankT5-EncDec/Pair", "RankT5-EncDec/Poly1", "RankT5-Enc/Softmax"]
    ref = values[("monot5", "pointwise_ce")]
    for (reranker, loss), v in values.items():
        label = {"monot5": "monoT5", "rankt5_encdec": "RankT5-EncDec", "rankt5_enc": "RankT5-Enc"}[reranker] + "/" + \
            {"pointwise_ce": "Generation (true/false)", "poly1": "Poly1", "softmax": "Softmax", "pairwise_logistic": "Pair"}[loss]
        row = rows[label]
        assert f"{v.mean():.4f}" in row
        p = ttest_rel(ref, v).pvalue if reranker != "monot5" else 1.0
        assert ("†" in row) == (p <= 0.05 and v.mean() > ref.mean()), (label, p)
    assert "†" in rows["RankT5-EncDec/Poly1"] and "†" not in rows["RankT5-EncDec/Pair"]  # worse is never marked
    assert "Holm-corrected p on mrr@10" in text


@pytest.mark.slow
def test_the_table1_preset_runs_as_one_sweep_with_a_tiny_t5(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "run.py", "-m", "+experiment=rankt5_table1", f"reranker.model={TINY_T5}",
         "reranker.train.max_steps=3", "reranker.train.batch_size=2", "logger=none", "show_progress=false",
         f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 12
    table = subprocess.run([sys.executable, "experiments/rankt5_table1.py", str(sweep)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-2000:]
    lines = [line for line in table.stdout.splitlines() if line.startswith("| ") and "Model" not in line]
    assert [tuple(c.strip() for c in line.split("|")[1:3]) for line in lines[:9]] == [
        ("monoT5", "Generation (true/false)"), ("monoT5", "Pair"), ("monoT5", "Softmax"), ("monoT5", "Poly1"),
        ("RankT5-EncDec", "PointCE"), ("RankT5-EncDec", "Pair"), ("RankT5-EncDec", "Softmax"),
        ("RankT5-EncDec", "Poly1"), ("RankT5-Enc", "PointCE")]
    assert (sweep / "table1.md").is_file()


def test_micro_batches_are_refused_where_nothing_would_use_them():
    with pytest.raises(ConfigError, match=r"`retriever.train.micro_batch_size=4`: only rerankers that read query"):
        validate_config(cfg(*HEADLINE, "retriever.train.micro_batch_size=4"))
    validate_config(cfg(*HEADLINE, "reranker.train.micro_batch_size=4"))


def test_an_unreachable_hub_fails_at_start_up_in_seconds(tmp_path):
    """No HF_HUB_OFFLINE, no cached copy, and a Hub that refuses connections: one quick connection attempt, not the
    download's retries with back-off (about 24 s without network)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), HF_ENDPOINT="http://127.0.0.1:9")
    start = time.perf_counter()
    out, result = run_py(tmp_path, *HEADLINE, "logger=none", env=env)
    assert result.returncode == 2 and time.perf_counter() - start < 30
    error = result.stderr.strip().splitlines()[-1]
    assert "`reranker.model=t5-base`" in error and "cannot be reached (127.0.0.1:9" in error, result.stderr[-2000:]
    out, result = run_py(tmp_path, *HEADLINE, "logger=none", "reranker.model=./no-such-folder", name="path", env=env)
    assert "`reranker.model=./no-such-folder` looks like a local path but is not a folder: point reranker.model" in \
        result.stderr
