"""Precision chosen by the hardware: bf16 only where it runs natively.

bf16 autocast pays on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX) and on GPUs that support it (Ampere and
later). On an AVX2-only CPU PyTorch emulates it: encoding was measured 5-7x slower than fp32 there and a cross-encoder
training step took minutes instead of seconds. So ``hardware.precision`` / ``hardware.inference_precision`` default
to ``auto``: ``bf16-mixed`` / ``bf16`` where the device has native bf16, ``32-true`` / ``fp32`` otherwise. An
explicit bf16 on a CPU without it is kept (the user asked) with a warning that measures the cost on this machine.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import torch

__all__ = ["native_bf16", "resolve_precision", "cpu_name"]

log = logging.getLogger(__name__)


def _device_type(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


@functools.lru_cache(maxsize=None)
def _cpu_capabilities() -> dict[str, Any]:
    try:
        return dict(torch.cpu.get_capabilities())
    except Exception:  # pragma: no cover - older torch
        return {}


def cpu_name() -> str:
    caps = _cpu_capabilities()
    return f"{caps.get('cpu_name', 'CPU')} ({torch.backends.cpu.get_cpu_capability()})"


def native_bf16(accelerator: str = "cpu") -> tuple[bool, str]:
    """``(native, what)``: whether the device runs bf16 natively, and a phrase naming it."""
    if _device_type(accelerator) == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        return ok, f"GPU {name} {'with' if ok else 'without'} native bf16"
    caps = _cpu_capabilities()
    flags = [f for f in ("avx512_bf16", "amx_bf16") if caps.get(f)]
    ok = bool(flags)
    return ok, f"CPU {cpu_name()} {'with ' + ' and '.join(flags).upper() if ok else 'without AVX512-BF16 or AMX'}"


def _bf16_cost() -> float:
    """How many times slower a bf16-autocast matmul of encoder size runs than fp32 here (best of 5 each)."""
    a, b = torch.randn(256, 384), torch.randn(384, 1536)

    def best(bf16: bool) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                (a @ b).sum()
            times.append(time.perf_counter() - start)
        return min(times)

    best(False), best(True)  # warm-up
    return best(True) / max(best(False), 1e-9)


def resolve_precision(hardware: Any) -> list[str]:
    """Replace ``auto`` in ``hardware.precision`` / ``hardware.inference_precision`` by what the device runs
    natively (in place; idempotent) and return notes for the log (a warning for an explicit bf16 on a CPU that
    emulates it)."""
    native, what = native_bf16(str(hardware.get("accelerator", "cpu")))
    notes = []
    if hardware.get("precision", "auto") == "auto":
        hardware.precision = "bf16-mixed" if native else "32-true"
        notes.append(f"hardware.precision=auto -> {hardware.precision} ({what})")
    if hardware.get("inference_precision", "auto") == "auto":
        hardware.inference_precision = "bf16" if native else "fp32"
        notes.append(f"hardware.inference_precision=auto -> {hardware.inference_precision} ({what})")
    asked = str(hardware.precision).startswith("bf16") or hardware.inference_precision == "bf16"
    if asked and not native and _device_type(str(hardware.get("accelerator", "cpu"))) == "cpu":
        slower = _bf16_cost()
        log.warning("bf16 was asked for on a %s: PyTorch emulates it there; a bf16 matmul of encoder size just ran "
                    "%.1fx %s than fp32. Use hardware.precision=auto hardware.inference_precision=auto (fp32 here).",
                    what, slower if slower >= 1 else 1 / slower, "slower" if slower >= 1 else "faster")
    return notes
