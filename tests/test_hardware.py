"""Precision chosen by the hardware: bf16 only where the device runs it natively."""

import logging

import pytest
from omegaconf import OmegaConf

import retrieval_lab.hardware as hw


def node(**kw):
    return OmegaConf.create({"accelerator": "cpu", "precision": "auto", "inference_precision": "auto", **kw})


@pytest.mark.parametrize("native, train, infer", [(True, "bf16-mixed", "bf16"), (False, "32-true", "fp32")])
def test_auto_picks_bf16_only_where_it_is_native(monkeypatch, native, train, infer):
    monkeypatch.setattr(hw, "_cpu_capabilities", lambda: {"cpu_name": "Test CPU", "avx512_bf16": native})
    h = node()
    notes = hw.resolve_precision(h)
    assert (h.precision, h.inference_precision) == (train, infer)
    assert len(notes) == 2 and ("AVX512_BF16" in notes[0]) == native and "Test CPU" in notes[0]
    assert hw.resolve_precision(h) == []  # resolved once: nothing left to decide


def test_explicit_bf16_on_an_emulating_cpu_is_kept_with_a_measured_warning(monkeypatch, caplog):
    monkeypatch.setattr(hw, "_cpu_capabilities", lambda: {"cpu_name": "Old CPU"})
    monkeypatch.setattr(hw, "_bf16_cost", lambda: 6.0)
    h = node(precision="bf16-mixed", inference_precision="bf16")
    with caplog.at_level(logging.WARNING, logger="retrieval_lab"):
        hw.resolve_precision(h)
    assert (h.precision, h.inference_precision) == ("bf16-mixed", "bf16")  # the user asked: kept
    assert "without AVX512-BF16 or AMX" in caplog.text and "6.0x slower than fp32" in caplog.text


def test_explicit_fp32_is_never_changed(monkeypatch, caplog):
    monkeypatch.setattr(hw, "_cpu_capabilities", lambda: {"avx512_bf16": True})
    h = node(precision="32-true", inference_precision="fp32")
    with caplog.at_level(logging.WARNING):
        assert hw.resolve_precision(h) == []
    assert (h.precision, h.inference_precision) == ("32-true", "fp32") and not caplog.text


def test_the_cost_measurement_is_a_real_ratio():
    assert 0.05 < hw._bf16_cost() < 50
