"""Benchmarks: our components side by side with the libraries they wrap or compete with.

Run them with ``python -m benchmarks.run NAME [NAME ...]`` (see ``benchmarks/run.py``); results (JSON +
markdown) go to ``benchmarks/results/``.

A benchmark is a module ``benchmarks/bench_<name>.py`` with

- ``run(data_dir=None, repeats=...) -> list[dict] | dict``: one row (flat dict) per system/configuration, or
  ``{"rows": [...], "notes": {...}}`` with findings that are not rows. The runner passes only the keyword
  arguments ``run`` declares: ``data_dir``, ``repeats``, ``quick`` (tiny sizes, ``--quick``) and ``out`` (the
  results folder, for a benchmark that writes files besides its table, e.g. plots).
- optionally ``COLUMNS``: ``[(row key, header, format spec), ...]`` for the markdown table (default: every key),
  or ``markdown(rows) -> str`` to render the table itself;
- optionally ``PACKAGES``: distribution names whose versions are recorded with the results.
"""
