"""Every domain-adaptation method end to end on the pair: what it reports, and that its
alignment term acts (split from test_adaptation.py so the two files run on both test workers)."""

from __future__ import annotations

import pytest
import torch

from conftest import (
    ALIGNING,
    DETERMINISTIC,
    PAIR,
    confusion_accuracy,
    deterministic_discriminator,
    final_weights,
)
from transferlab.train import train


def assert_reports_both_domains(summary: dict, method: str, run_dir) -> None:
    final = summary["final"]
    assert {"test/acc", "test/source_acc", "val/acc", "val/target_acc"} <= set(final)
    # test/acc is the target's: the share of the target test images on the confusion matrix's
    # diagonal (the matrix is the target's), not the source's accuracy
    accuracy, images = confusion_accuracy(run_dir)
    assert final["test/acc"] == pytest.approx(accuracy, abs=1e-6) and images > 0
    assert ("train/alignment" in final) == (method != "source_only")


def test_source_only_reports_both_domains_and_no_alignment_term(fast_cfg):
    cfg = fast_cfg(*PAIR, "method=source_only", "+trainer.limit_test_batches=2")
    summary = train(cfg)
    assert_reports_both_domains(summary, "source_only", cfg.paths.output_dir)
    assert summary["final"]["train/loss"] == pytest.approx(summary["final"]["train/ce"])


@pytest.mark.parametrize("method", ALIGNING)
def test_the_alignment_term_moves_the_features_and_lambda_zero_removes_it(fast_cfg, tmp_path, method):
    """λ > 0 changes the trained backbone (from the first step: no warm-up); λ = 0 leaves CE alone."""
    common = [*PAIR, *DETERMINISTIC, "trainer.max_epochs=1", *deterministic_discriminator(method)]
    aligned = train(fast_cfg(*common, f"method={method}", "method.lam=1", output_dir=tmp_path / "a"))
    off = train(fast_cfg(*common, f"method={method}", "method.lam=0", output_dir=tmp_path / "b"))
    assert_reports_both_domains(aligned, method, tmp_path / "a")
    expected_loss = aligned["final"]["train/ce"] + aligned["final"]["train/alignment"]
    assert aligned["final"]["train/loss"] == pytest.approx(expected_loss, rel=1e-4)
    a, b = final_weights(aligned), final_weights(off)
    backbone = [k for k in a if k.startswith("net.backbone")]
    assert any(not torch.equal(a[k], b[k]) for k in backbone)
    assert off["final"]["train/ce"] == pytest.approx(off["final"]["train/loss"])
