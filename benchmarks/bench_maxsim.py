"""MaxSim re-ranking on CPU: ``TokenStore.maxsim`` vs torch einsum, naive numpy, PyLate and maxsim-cpu.

What is measured: the exact late-interaction re-ranking of ``k`` candidate documents for one query, query
encoding excluded. Default shape: k = 1,000 documents of 180 tokens (``--no-fixed-length``: uniform 120..180)
x 32 query vectors x 128 dims, the documents drawn at random (per query) from a synthetic store of 5,000
documents of random L2-normalised float16 vectors, written with ``TokenStoreWriter`` to a temporary folder and
opened with ``TokenStore.load`` (memory-mapped, as in production; the file was just written, so it is in the page
cache). Queries: ``R`` random normalised ``[32, 128]`` float32 arrays.

Methods, all in one process, on the same store and the same candidate lists, interleaved query by query (the
order rotates from one query to the next so that they share the machine's load):

- ``ours``: ``store.maxsim(q, docs, timer=...)``; its timer splits "gather" (rows gathered, fp16 -> fp32) and
  "maxsim" (matmul, max, sum);
- ``torch einsum (padded)``: the candidates' rows gathered into a zero-padded float32 ``[k, Lmax, dim]`` tensor
  plus a boolean mask (one ``index_select`` + conversion + scatter: "gather"), then
  ``torch.einsum("qm,dtm->dqt")``, padding set to -inf, max over tokens, sum over query vectors ("compute");
- ``numpy naive``: per document, its fp16 rows ``.astype(np.float32)`` ("gather"), ``rows @ q.T``, max, sum
  ("compute"), accumulated over the documents;
- ``PyLate colbert_scores``: as ``pylate.rank.rerank`` does it: one float32 tensor per document,
  ``torch.nn.utils.rnn.pad_sequence(batch_first=True, padding_value=0)`` ("gather"), then
  ``colbert_scores(q[None], docs)[0]`` ("compute"; torch backend: einsum ``"ash,bth->abst"``, max, sum; zero
  padding scores 0, which equals the true max only when a document has a token with a positive similarity:
  always so here). PyLate is installed without its dependencies and its package ``__init__`` does not import,
  so the module is loaded with stub parent packages (:func:`load_pylate_scores`);
- ``maxsim-cpu variable``: ``maxsim_cpu.maxsim_scores_variable(q, list of float32 [n_i, dim] arrays)`` (the
  list is "gather"); ``maxsim-cpu padded``: ``maxsim_cpu.maxsim_scores(q, float32 [k, Lmax, dim])`` on the same
  padded block ``ours`` gathers (short documents repeat their last token, which cannot change a max).

Agreement: every method's scores on the first ``check`` queries against a float64 numpy reference computed
from the stored (fp16) values; the benchmark fails if any differs by 1e-4 or more.

Threads: ``--threads T`` (or ``$RETRIEVAL_LAB_BENCH_THREADS``) sets torch's threads and maxsim-cpu's
``RAYON_NUM_THREADS``; default: the libraries' own (all cores). numpy's BLAS keeps its own. On a machine whose
cores are busy with another job, multi-threaded torch can run many times slower than 1 thread (its threads wait
on descheduled peers): run it on an idle machine, and compare ``--threads 1``.

The FLOP floor is ``2 * k * L * Tq * dim`` (L = the candidates' mean real length; padded methods do
``Lmax / L`` times more). ``GFLOP/s`` = floor / median time.

    .venv/bin/python -m benchmarks.run maxsim                 # full size, writes results/maxsim.{json,md}
    .venv/bin/python -m benchmarks.bench_maxsim [--quick] [--docs N] [--k K] [--doc-len L] [--min-len L0]
        [--no-fixed-length] [--query-len Tq] [--dim D] [--queries R] [--threads T] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

PACKAGES = ("torch", "numpy", "maxsim-cpu", "pylate")
N_DOCS, K, DOC_LEN, MIN_LEN, QUERY_LEN, DIM, N_QUERIES, CHECK = 5000, 1000, 180, 120, 32, 128, 30, 3
QUICK = {"n_docs": 300, "k": 100, "doc_len": 60, "min_len": 40, "n_queries": 5}
TOLERANCE = 1e-5  # the bound against float64
THREADS_ENV = "RETRIEVAL_LAB_BENCH_THREADS"  # as bench_encode; default: the libraries' own (all cores)

COLUMNS = [
    ("method", "method", None),
    ("median_ms", "median ms/query", ".2f"),
    ("p90_ms", "p90 ms", ".2f"),
    ("gather_ms", "gather/convert ms", ".2f"),
    ("compute_ms", "compute ms", ".2f"),
    ("ratio_to_ours", "time / ours", ".2f"),
    ("gflops", "GFLOP/s (floor / median)", ".1f"),
    ("max_abs_diff", "max |diff| vs fp64", ".1e"),
    ("error", "not run because", None),
]


# -- the other libraries ------------------------------------------------------------------------------------------

def load_pylate_scores():
    """PyLate's ``colbert_scores``: the normal import, else ``pylate/scores/colbert.py`` loaded with stub
    ``pylate`` and ``pylate.utils`` packages (their ``__init__`` import the training stack, which is not
    installed; ``scores`` needs only ``pylate.utils.tensor``). ``sys.modules`` is restored afterwards.
    Returns ``(function, how it was loaded)``."""
    try:
        from pylate.scores import colbert_scores

        return colbert_scores, "from pylate.scores import colbert_scores"
    except ImportError as error:
        first_error = f"{type(error).__name__}: {error}"
    spec = importlib.util.find_spec("pylate")
    if spec is None or spec.origin is None:
        raise ImportError("pylate is not installed")
    root = Path(spec.origin).parent
    saved = {k: v for k, v in sys.modules.items() if k == "pylate" or k.startswith("pylate.")}
    for k in saved:
        del sys.modules[k]
    try:
        for name, folder in (("pylate", root), ("pylate.utils", root / "utils")):
            stub = types.ModuleType(name)
            stub.__path__ = [str(folder)]
            sys.modules[name] = stub
        module = importlib.import_module("pylate.scores.colbert")
    finally:
        for k in [k for k in sys.modules if k == "pylate" or k.startswith("pylate.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return module.colbert_scores, f"stub parent packages ({first_error})"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                    "unknown")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- data --------------------------------------------------------------------------------------------------------

def _unit(rng: np.random.Generator, shape) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def build_store(folder: Path, n_docs: int, lengths: np.ndarray, dim: int, rng: np.random.Generator):
    from retrieval_lab.indexes.token_store import TokenStore, TokenStoreWriter

    writer = TokenStoreWriter(folder, dim, "float16")
    for i in range(0, n_docs, 500):  # streamed, as a build would
        n = lengths[i:i + 500]
        flat = _unit(rng, (int(n.sum()), dim))
        writer.add([f"d{j}" for j in range(i, i + len(n))], np.split(flat, np.cumsum(n)[:-1]))
    writer.finish(info={"synthetic": True})
    return TokenStore.load(folder)


# -- the methods: each returns (scores float32 [k], gather seconds, compute seconds) -------------------------------

def _padded_rows(store, docs: np.ndarray):
    """Row indices [k, Lmax] into the store (padding: the document's last row) and the padding mask."""
    starts, lens = store.offsets[docs], store.lengths[docs]
    width = int(lens.max())
    col = np.minimum(np.arange(width)[None, :], lens[:, None] - 1)
    return starts[:, None] + col, np.arange(width)[None, :] < lens[:, None]


def m_ours(store, q, docs):
    timer: dict[str, float] = {}
    scores = store.maxsim(q, docs, timer=timer)
    return scores, timer["gather"] + timer["convert"], timer["maxsim"]


def m_torch_einsum(store, q, docs):
    import torch

    t0 = time.perf_counter()
    rows, mask = _padded_rows(store, docs)
    real = torch.from_numpy(rows[mask])
    mask_t = torch.from_numpy(mask)
    x = torch.zeros(*mask.shape, store.dim, dtype=torch.float32)
    x[mask_t] = torch.index_select(store._tokens_t, 0, real).float()
    t1 = time.perf_counter()
    sim = torch.einsum("qm,dtm->dqt", torch.from_numpy(q), x)
    sim = sim.masked_fill(~mask_t[:, None, :], float("-inf"))
    scores = sim.amax(-1).sum(-1).numpy()
    return scores, t1 - t0, time.perf_counter() - t1


def m_numpy_naive(store, q, docs):
    qT = np.ascontiguousarray(q.T)
    out = np.empty(len(docs), dtype=np.float32)
    gather = compute = 0.0
    clock = time.perf_counter
    for j, d in enumerate(docs):
        t0 = clock()
        x = store.tokens[store.offsets[d]:store.offsets[d + 1]].astype(np.float32)
        t1 = clock()
        out[j] = (x @ qT).max(0).sum()
        gather += t1 - t0
        compute += clock() - t1
    return out, gather, compute


def make_pylate(colbert_scores):
    def m_pylate(store, q, docs):
        import torch

        t0 = time.perf_counter()
        per_doc = [torch.from_numpy(store.doc_tokens(int(d)).astype(np.float32)) for d in docs]
        padded = torch.nn.utils.rnn.pad_sequence(per_doc, batch_first=True, padding_value=0)
        t1 = time.perf_counter()
        scores = colbert_scores(queries_embeddings=torch.from_numpy(q)[None], documents_embeddings=padded)[0]
        return scores.numpy(), t1 - t0, time.perf_counter() - t1

    return m_pylate


def make_maxsim_cpu(maxsim_cpu):
    def m_variable(store, q, docs):
        t0 = time.perf_counter()
        per_doc = [np.ascontiguousarray(store.doc_tokens(int(d)), dtype=np.float32) for d in docs]
        t1 = time.perf_counter()
        scores = maxsim_cpu.maxsim_scores_variable(q, per_doc)
        return np.asarray(scores, dtype=np.float32), t1 - t0, time.perf_counter() - t1

    def m_padded(store, q, docs):
        import torch

        t0 = time.perf_counter()
        rows, _ = _padded_rows(store, docs)
        x = torch.index_select(store._tokens_t, 0, torch.from_numpy(rows.reshape(-1))).float()
        x = x.view(*rows.shape, store.dim).numpy()
        t1 = time.perf_counter()
        scores = maxsim_cpu.maxsim_scores(q, x)
        return np.asarray(scores, dtype=np.float32), t1 - t0, time.perf_counter() - t1

    return m_variable, m_padded


def reference(store, q, docs) -> np.ndarray:
    """float64 MaxSim of the stored (fp16) values."""
    q64 = q.astype(np.float64)
    return np.array([(store.tokens[store.offsets[d]:store.offsets[d + 1]].astype(np.float64) @ q64.T).max(0).sum()
                     for d in docs])


# -- the benchmark -------------------------------------------------------------------------------------------------

def run(data_dir=None, repeats: int | None = None, n_docs: int = N_DOCS, k: int = K, doc_len: int = DOC_LEN,
        min_len: int = MIN_LEN, fixed_length: bool = True, query_len: int = QUERY_LEN, dim: int = DIM,
        n_queries: int = N_QUERIES, check: int = CHECK, threads: int | None = None, seed: int = 0,
        quick: bool = False) -> dict:
    """``repeats`` (the runner's flag) is the number of queries R. ``data_dir`` is unused (synthetic data)."""
    if quick:
        n_docs, k, doc_len, min_len, n_queries = (QUICK[x] for x in ("n_docs", "k", "doc_len", "min_len",
                                                                     "n_queries"))
    n_queries = int(repeats or n_queries)
    threads = threads or (int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None)
    if threads:
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # maxsim-cpu's pool, read at its first call
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    k = min(k, n_docs)
    rng = np.random.default_rng(seed)
    lengths = (np.full(n_docs, doc_len) if fixed_length else rng.integers(min_len, doc_len + 1, n_docs)).astype(
        np.int64)

    methods = {"ours": m_ours, "torch einsum (padded)": m_torch_einsum, "numpy naive": m_numpy_naive}
    errors: dict[str, str] = {}
    pylate_how = None
    try:
        colbert_scores, pylate_how = load_pylate_scores()
        methods["PyLate colbert_scores"] = make_pylate(colbert_scores)
    except Exception as error:  # noqa: BLE001 (reported, not fatal)
        errors["PyLate colbert_scores"] = f"{type(error).__name__}: {error}"
    try:
        import maxsim_cpu

        methods["maxsim-cpu variable"], methods["maxsim-cpu padded"] = make_maxsim_cpu(maxsim_cpu)
    except Exception as error:  # noqa: BLE001
        errors["maxsim-cpu variable"] = errors["maxsim-cpu padded"] = f"{type(error).__name__}: {error}"

    with tempfile.TemporaryDirectory(prefix="bench_maxsim_") as tmp:
        t = time.perf_counter()
        store = build_store(Path(tmp) / "store", n_docs, lengths, dim, rng)
        build_s = time.perf_counter() - t
        queries = [_unit(rng, (query_len, dim)) for _ in range(n_queries)]
        candidates = [rng.choice(n_docs, size=k, replace=False).astype(np.int64) for _ in range(n_queries)]

        # agreement with float64 (also the warm-up): a method that fails to run is reported, not fatal
        diffs = {name: 0.0 for name in methods}
        for qi in range(min(check, n_queries)):
            ref = reference(store, queries[qi], candidates[qi])
            for name in list(methods):
                try:
                    got = methods[name](store, queries[qi], candidates[qi])[0]
                except Exception as error:  # noqa: BLE001
                    errors[name] = f"{type(error).__name__}: {error}"
                    del methods[name], diffs[name]
                    continue
                diffs[name] = max(diffs[name], float(np.abs(got.astype(np.float64) - ref).max()))
        bad = {n: d for n, d in diffs.items() if not d < TOLERANCE}
        assert not bad, f"scores differ from the float64 reference by >= {TOLERANCE}: {bad}"

        names = list(methods)
        total = {n: [] for n in names}
        gather = {n: [] for n in names}
        compute = {n: [] for n in names}
        load = [os.getloadavg()[0]]
        for qi in range(n_queries):
            r = qi % len(names)
            for name in names[r:] + names[:r]:
                t0 = time.perf_counter()
                _, g, c = methods[name](store, queries[qi], candidates[qi])
                total[name].append(time.perf_counter() - t0)
                gather[name].append(g)
                compute[name].append(c)
            load.append(os.getloadavg()[0])
        mean_len = float(np.mean([store.lengths[c].mean() for c in candidates]))
        mean_lmax = float(np.mean([store.lengths[c].max() for c in candidates]))
        num_tokens, store_bytes = store.num_tokens, store.nbytes()
        del store

    flops = 2.0 * k * mean_len * query_len * dim
    ms = lambda xs: 1e3 * statistics.median(xs)  # noqa: E731
    ours_ms = ms(total["ours"]) if "ours" in total else None
    rows = []
    for name in [*names, *[n for n in errors if n not in names]]:
        if name not in names:
            rows.append({"method": name, "error": errors[name]})
            continue
        med = ms(total[name])
        rows.append({
            "method": name,
            "median_ms": med,
            "p90_ms": 1e3 * float(np.percentile(total[name], 90)),
            "gather_ms": ms(gather[name]),
            "compute_ms": ms(compute[name]),
            "ratio_to_ours": med / ours_ms if ours_ms else None,
            "gflops": flops / (med * 1e-3) / 1e9,
            "max_abs_diff": diffs[name],
            "queries": n_queries,
            "ms_per_query": [round(1e3 * x, 3) for x in total[name]],
        })
    notes = {
        "shape": f"k={k} documents x {'all ' + str(doc_len) if fixed_length else f'{min_len}..{doc_len}'} tokens "
                 f"(candidates' mean {mean_len:.1f}, mean Lmax {mean_lmax:.1f}) x Tq={query_len} x dim={dim}; "
                 f"store of {n_docs} documents, {num_tokens} fp16 vectors, {store_bytes / 2**20:.1f} MiB, "
                 f"built in {build_s:.2f} s; {n_queries} queries, agreement checked on {min(check, n_queries)}",
        "FLOP floor per query (2*k*L*Tq*dim, L = mean real length)": f"{flops / 1e9:.3f} GFLOP "
        f"(padded to Lmax: {flops * mean_lmax / mean_len / 1e9:.3f})",
        "torch threads": torch.get_num_threads(),
        "RAYON_NUM_THREADS (maxsim-cpu)": os.environ.get("RAYON_NUM_THREADS", "unset (rayon: all cores)"),
        "CPU": f"{cpu_model()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
               f"{os.cpu_count()} logical CPUs",
        "PyLate loaded by": pylate_how or "not loaded",
        "load average (1 min) during timing, min/median/max": [round(min(load), 2),
                                                               round(statistics.median(load), 2),
                                                               round(max(load), 2)],
    }
    if errors:
        notes["methods not run"] = errors
    return {"rows": rows, "notes": notes}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"tiny sizes for a smoke test: {QUICK}")
    ap.add_argument("--docs", type=int, default=N_DOCS, help="documents in the synthetic store")
    ap.add_argument("--k", type=int, default=K, help="candidate documents re-ranked per query")
    ap.add_argument("--doc-len", type=int, default=DOC_LEN, help="longest document (tokens)")
    ap.add_argument("--min-len", type=int, default=MIN_LEN, help="shortest document (uniform lengths)")
    ap.add_argument("--fixed-length", action=argparse.BooleanOptionalAction, default=True,
                    help="every document --doc-len tokens (the default: the issue's shape); --no-fixed-length: "
                         "uniform --min-len..--doc-len")
    ap.add_argument("--query-len", type=int, default=QUERY_LEN, help="query vectors Tq")
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--queries", type=int, default=N_QUERIES, help="timed queries R")
    ap.add_argument("--check", type=int, default=CHECK, help="queries checked against float64")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"torch threads and RAYON_NUM_THREADS (default ${THREADS_ENV}, else the libraries' own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="write OUT/maxsim.json and .md as the runner does (default: print only)")
    args = ap.parse_args(argv)
    kwargs = dict(n_docs=args.docs, k=args.k, doc_len=args.doc_len, min_len=args.min_len,
                  fixed_length=args.fixed_length, query_len=args.query_len, dim=args.dim, n_queries=args.queries,
                  check=args.check, threads=args.threads, seed=args.seed, quick=args.quick)
    if args.out is None:
        from benchmarks.run import markdown_table

        result = run(**kwargs)
        print(markdown_table(result["rows"], COLUMNS))
        for key, value in result["notes"].items():
            print(f"- {key}: {value}")
        return
    from benchmarks import run as runner

    module = sys.modules[__name__]
    rows, notes, env = runner.timed_run(module, lambda: run(**kwargs))
    print(runner.write("maxsim", module, rows, notes, env, args.out))
    print(f"wrote {args.out / 'maxsim.json'} and {args.out / 'maxsim.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
