"""Run named benchmarks in one process; print their tables and write them as JSON + markdown.

    python -m benchmarks.run bm25 [faiss ...] [--data DIR] [--out benchmarks/results] [--repeats N] [--quick]
    python -m benchmarks.run --list

Benchmarks: ``bm25``, ``colbert_index``, ``encode``, ``faiss``, ``maxsim``, ``train``, ``rankt5`` (RankT5 / MonoT5
scoring and training vs the plain Hugging Face T5 path), one ``benchmarks/bench_NAME.py`` each. A ``--quick`` run
(smoke sizes) prints its table but writes nothing unless ``--out`` is given.

``NAME`` runs ``benchmarks/bench_NAME.py`` (protocol in ``benchmarks/__init__.py``). For each one the runner
writes ``OUT/NAME.json`` (rows, notes, and the environment: machine, load average before and after, package
versions, git commit) and ``OUT/NAME.md`` (the same table as printed). Timings on a shared machine move with
its load: the load averages are recorded so that a reader can tell.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path

from retrieval_lab.cache import write_text_atomic

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
DATA_ENV = "RETRIEVAL_LAB_DATA"
DEFAULT_DATA = "/work/shared/datasets"


def available() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(packages=()) -> dict:
    versions = {}
    for name in packages:
        try:
            versions[name] = pkg_version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
        "packages": versions,
    }


def _cpu() -> str:
    """The CPU and whether it runs bf16 natively: bf16 figures mean little without it."""
    from retrieval_lab.hardware import native_bf16

    return native_bf16("cpu")[1]


def fmt(value, spec: str | None = None) -> str:
    """A table cell: ``spec`` when given, else a readable default for the type."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        a = abs(value)
        return f"{value:,.0f}" if a >= 1000 else f"{value:.2f}" if a >= 10 else f"{value:.3g}"
    return str(value)


def markdown_table(rows: list[dict], columns=None) -> str:
    if not rows:
        return "(no rows)"
    if columns is None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        columns = [(k, k, None) for k in keys]
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), spec) for k, _, spec in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def render(name: str, module, rows: list[dict], notes: dict, env: dict) -> str:
    if hasattr(module, "markdown"):
        table = module.markdown(rows)
    else:
        table = markdown_table(rows, getattr(module, "COLUMNS", None))
    title = (module.__doc__ or name).strip().splitlines()[0]
    lines = [f"## {name}: {title}", ""]
    lines.append(
        f"{env.get('cpu') or env['processor']}, {env['cpu_count']} CPUs, Python {env['python']}, commit {env['git_commit']}, "
        f"{env['finished']}; load average (1/5/15 min) before {env['loadavg_before']}, after {env['loadavg_after']}; "
        f"{env['wall_s']:.0f} s"
    )
    if env["packages"]:
        lines.append(", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    lines += ["", table]
    if notes:
        lines.append("")
        lines += [f"- {k}: {fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def run_one(name: str, data_dir: Path | None, repeats: int | None, quick: bool = False,
            out: Path | None = None) -> tuple[object, list[dict], dict, dict]:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    params = inspect.signature(module.run).parameters
    kwargs = {}
    if "data_dir" in params:
        kwargs["data_dir"] = data_dir
    if repeats is not None and "repeats" in params:
        kwargs["repeats"] = repeats
    if quick:
        if "quick" not in params:
            raise SystemExit(f"benchmark {name!r} has no quick mode")
        kwargs["quick"] = True
    if out is not None and "out" in params:  # a benchmark that writes more than its table (plots)
        kwargs["out"] = out
    return (module, *timed_run(module, lambda: module.run(**kwargs)))


def timed_run(module, call) -> tuple[list[dict], dict, dict]:
    """``call()`` (a benchmark's ``run`` with its arguments) -> (rows, notes, environment with timing and load)."""
    env_before = _loadavg()
    t0 = time.perf_counter()
    result = call()
    wall = time.perf_counter() - t0
    rows, notes = (result.get("rows", []), result.get("notes", {})) if isinstance(result, dict) else (result, {})
    env = environment(getattr(module, "PACKAGES", ()))
    env.update(
        loadavg_before=env_before,
        loadavg_after=_loadavg(),
        wall_s=wall,
        finished=_dt.datetime.now().isoformat(timespec="seconds"),
    )
    return list(rows), dict(notes), env


def write(name: str, module, rows: list[dict], notes: dict, env: dict, out: Path) -> str:
    """Write ``out/NAME.json`` and ``out/NAME.md``; returns the markdown."""
    text = render(name, module, rows, notes, env)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": env, "rows": rows, "notes": notes}
    for suffix, content in ((".json", json.dumps(payload, indent=2, default=str) + "\n"), (".md", text)):
        write_text_atomic(out / f"{name}{suffix}", content)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run; available: {', '.join(available())}")
    ap.add_argument("--data", type=Path, default=None,
                    help=f"collections root (default: ${DATA_ENV}, else {DEFAULT_DATA})")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"where NAME.json and NAME.md go (default {DEFAULT_OUT}; --quick: only when given)")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default: each benchmark's own)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, for a smoke test (benchmarks whose run() takes quick=); writes only with --out")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)

    if args.list or not args.names:
        print("\n".join(available()))
        return 0 if args.list else 2
    unknown = [n for n in args.names if n not in available()]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    data_dir = args.data or Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)

    out = args.out or DEFAULT_OUT
    dry = args.quick and args.out is None  # a smoke run does not overwrite the committed results
    if not dry:
        out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        module, rows, notes, env = run_one(name, data_dir, args.repeats, args.quick, None if dry else out)
        if dry:
            print(render(name, module, rows, notes, env), flush=True)
            print(f"--quick without --out: nothing written for {name}", file=sys.stderr)
            continue
        print(write(name, module, rows, notes, env, out), flush=True)
        print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
