"""Start-up checks of the composed config (issue 8): unknown keys that a `+` let through, impossible values, a missing
`resume_from`, and run folders (unique per run, never one holding a finished run)."""

import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from retrieval_lab.config import ConfigError, check_run_folder, register, validate_config
from tests.conftest import ROOT

register()

FAST = ["retriever=bm25", "baseline=none", "logger=none"]  # what a run that got past the checks would cost little


def cfg(*overrides, hydra=False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def errors(*overrides) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg(*overrides))
    return str(info.value)


def run_py(*args, timeout=300):
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------ unknown keys


@pytest.mark.parametrize(
    "override, named",
    [
        ("+foo=1", "`foo`"),
        ("+retriever.k2=3", "`retriever.k2`"),
        ("+retriever.index.nprob=4", "`retriever.index.nprob`"),
        ("+retriever.train.max_step=4", "`retriever.train.max_step`"),
        ("+reranker.dept=5", "`reranker.dept`"),
        ("+baseline.k3=1", "`baseline.k3`"),
        ("+eval.metric=[map]", "`eval.metric`"),
        ("+hardware.thread=2", "`hardware.thread`"),
        ("+dataset.qrel=x", "`dataset.qrel`"),
    ],
)
def test_an_added_key_no_schema_knows_is_an_error_naming_it(override, named):
    message = errors(override)
    assert named in message and "unknown key" in message


def test_the_error_suggests_the_key_meant():
    assert "did you mean `retriever.k`?" in errors("+retriever.k2=3")


def test_a_stage_loss_node_is_checked_against_the_loss_schemas():
    assert "`retriever.train.loss.marg`" in errors("retriever=repbert", "+retriever.train.loss.marg=2")
    validate_config(cfg("retriever=repbert", "retriever.train.loss.margin=2"))


def test_every_option_and_preset_passes_and_hydras_own_keys_are_not_ours():
    for group in ["dataset", "retriever", "reranker", "loss", "hardware", "logger", "baseline"]:
        for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
            validate_config(cfg(f"{group}={option}"))
    for preset in sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")):  # `# @package _global_`
        validate_config(cfg(f"+experiment={preset}"))
    validate_config(cfg("+hydra.job.env_set.X=1", hydra=True))  # the `hydra` node is Hydra's


def test_several_problems_are_reported_together():
    message = errors("+foo=1", "retriever=bm25", "retriever.k=0")
    assert message.startswith("2 config errors") and "`foo`" in message and "`retriever.k=0`" in message


# ------------------------------------------------------------------------------------- impossible values


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["retriever=bm25", "retriever.k=0"], "`retriever.k=0`"),
        (["retriever.k=-5"], "`retriever.k=-5`"),
        (["retriever=run", "retriever.k=0"], "`retriever.k=0`"),
        (["baseline.k=0"], "`baseline.k=0`"),
        (["retriever=bm25", "retriever.b=1.5"], "`retriever.b=1.5`"),
        (["reranker=cross_encoder", "reranker.depth=-1"], "`reranker.depth=-1`"),
        (["reranker=cross_encoder", "reranker.depth=0"], "`reranker.depth=0`"),
        (["reranker=cross_encoder", "reranker.train.max_steps=0"], "`reranker.train.max_steps=0`"),
        (["reranker=cross_encoder", "reranker.train.list_size=1"], "`reranker.train.list_size=1`"),
        (["reranker=cross_encoder", "reranker.train.lr=0"], "`reranker.train.lr=0.0`"),
        (["reranker=cross_encoder", "reranker.train.batch_size=0"], "`reranker.train.batch_size=0`"),
        (["reranker=cross_encoder", "reranker.train.warmup_ratio=1.5"], "`reranker.train.warmup_ratio=1.5`"),
        (["retriever=repbert", "retriever.train.max_steps=-1"], "`retriever.train.max_steps=-1`"),
        (["retriever=repbert", "retriever.train.schedule=cosine"], "`retriever.train.schedule=cosine`"),
        (["retriever.index.nprobe=0"], "`retriever.index.nprobe=0`"),
        (["hardware.threads=0"], "`hardware.threads=0`"),
    ],
)
def test_impossible_values_are_errors_naming_the_key(overrides, named):
    assert named in errors(*overrides)


def test_possible_values_pass():
    validate_config(cfg("reranker=cross_encoder", "reranker.train.list_size=2", "reranker.depth=1",
                        "reranker.train.max_steps=1", "retriever=bm25", "retriever.k=1"))
    # a list of one is no error for a pointwise loss, nor with training triples (lists are then pairs)
    validate_config(cfg("reranker=cross_encoder", "reranker.train.list_size=1", "loss=pointwise_ce"))
    validate_config(cfg("reranker=cross_encoder", "reranker.train.list_size=1", "reranker.train.triples=x"))
    # a disabled training's settings are not used
    validate_config(cfg("retriever=biencoder", "retriever.train.max_steps=0"))


def test_resume_from_must_name_an_existing_checkpoint(tmp_path):
    missing = tmp_path / "nope.ckpt"
    message = errors("reranker=cross_encoder", f"reranker.train.resume_from={missing}")
    assert "`reranker.train.resume_from=" in message and "does not exist" in message and str(missing) in message
    assert "is a folder" in errors("reranker=cross_encoder", f"reranker.train.resume_from={tmp_path}")
    assert "enabled=false" in errors("retriever=biencoder", f"retriever.train.resume_from={missing}")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    validate_config(cfg("reranker=cross_encoder", f"reranker.train.resume_from={ckpt}"))


# ------------------------------------------------------------------------------ through the entry point


@pytest.mark.parametrize(
    "args, named",
    [
        (["+foo=1"], "`foo`"),
        (["+retriever.k2=3"], "`retriever.k2`"),
        (["retriever.k=0"], "`retriever.k=0`"),
        (["reranker=cross_encoder", "reranker.train.resume_from=/no/such/last.ckpt"], "/no/such/last.ckpt"),
    ],
)
def test_run_py_stops_at_startup_naming_the_key_and_writes_nothing(tmp_path, args, named):
    out = tmp_path / "run"
    result = run_py(*FAST, *args, f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert named in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()  # before any folder, data or stage


# ----------------------------------------------------------------------------------------- run folders


def _resolved_run_dir() -> str:
    code = ("from hydra import compose, initialize_config_dir\n"
            "from retrieval_lab.config import register\n"
            "register()\n"
            f"with initialize_config_dir(config_dir={str(ROOT / 'conf')!r}, version_base='1.3'):\n"
            "    c = compose(config_name='config', return_hydra_config=True)\n"
            "print(c.hydra.run.dir, c.hydra.sweep.dir)\n")
    return code


def test_two_runs_started_in_the_same_second_get_different_folders():
    procs = [subprocess.Popen([sys.executable, "-c", _resolved_run_dir()], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    dirs = [p.communicate(timeout=120)[0].split() for p in procs]
    for run_dir, sweep_dir in dirs:
        assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-[0-9a-f]{6}", run_dir), run_dir
        assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-[0-9a-f]{6}", sweep_dir), sweep_dir
    assert dirs[0][0] != dirs[1][0] and dirs[0][1] != dirs[1][1]


def test_the_suffix_is_drawn_once_per_process_so_a_sweeps_jobs_share_its_folder():
    suffixes = {OmegaConf.select(cfg(hydra=True), key).rsplit("-", 1)[1]
                for key in ("hydra.run.dir", "hydra.sweep.dir") for _ in range(2)}
    assert len(suffixes) == 1


def test_a_folder_holding_a_finished_run_is_refused(tmp_path):
    check_run_folder(tmp_path / "new")
    check_run_folder(tmp_path)  # an unfinished run (no metrics.json) may be continued in its folder
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a finished run"):
        check_run_folder(tmp_path)
    sweep = tmp_path / "sweep"
    (sweep / "1").mkdir(parents=True)
    check_run_folder(sweep, sweep=True)
    (sweep / "1" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="hydra.sweep.dir"):
        check_run_folder(sweep, sweep=True)


def test_run_py_never_writes_into_a_finished_runs_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"bm25": {"ndcg@10": 0.5}}')
    result = run_py(*FAST, f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2 and "already holds a finished run" in result.stderr, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]  # not even Hydra's .hydra/ was written
    assert (out / "metrics.json").read_text() == '{"bm25": {"ndcg@10": 0.5}}'

    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "metrics.json").write_text("{}")
    result = run_py("-m", *FAST, "seed=1,2", f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2 and "hydra.sweep.dir" in result.stderr, result.stderr[-2000:]
    assert sorted(p.name for p in sweep.rglob("*")) == ["0", "metrics.json"]


def test_the_pipeline_refuses_a_finished_folder_outside_hydra(tmp_path, monkeypatch):
    from retrieval_lab import pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline.time, "strftime", lambda fmt: "2026-01-01/12-00-00")  # both calls in one second
    first = pipeline.output_dir()
    assert re.fullmatch(r"\d\d-\d\d-\d\d-[0-9a-f]{6}", first.name) and first.is_dir()
    (first / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="finished run"):
        pipeline.output_dir()


@pytest.mark.parametrize(
    "override, named",
    [
        ("eval.rel_threshold=0", "`eval.rel_threshold=0`"),
        ("eval.significance=foo", "`eval.significance=foo`"),
        ("dataset.rel_threshold=0", "`dataset.rel_threshold=0`"),
        ("hardware.devices=0", "`hardware.devices=0`"),
        ("hardware.precision=bf17", "`hardware.precision=bf17`"),
        ("hardware.inference_precision=int8", "`hardware.inference_precision=int8`"),
        ("retriever.k=${nope}", "interpolation"),
    ],
)
def test_evaluation_and_hardware_settings_no_run_can_use(override, named):
    assert named in errors(override)


def test_a_metric_ranx_cannot_compute_stops_the_run_before_any_stage(tmp_path):
    out = tmp_path / "run"
    result = run_py(*FAST, "eval.metrics=[ndcg@x]", f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: eval.metrics: " in result.stderr and "ndcg@x" in result.stderr
    assert not (out / "runs").exists()  # no stage ran
