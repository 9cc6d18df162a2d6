"""What a training step costs the host: the counters of scripts/step_counters.py, and the template's
steps counted with them (no copy to the device and no read of it on a step that writes no log)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from conftest import PAIR, load_script
from transferlab.methods.accuracy import RunningAccuracy
from transferlab.train import train


@pytest.fixture
def counters(monkeypatch):
    return load_script("step_counters", monkeypatch)


def test_host_traffic_counts_what_would_cross_the_bus_or_wait_for_the_device(counters):
    resident = torch.arange(10.0)  # made before counting: lives on the device
    with counters.HostTraffic("cpu") as traffic:
        offsets = torch.randint(0, 3, (4,)).to("cpu")  # drawn on the host, then copied: 1
        flips = (torch.rand(4) < 0.5).to(resident.device)  # a host-born result, copied: 2
        on_device = torch.randint(0, 3, (4,), device="cpu")  # drawn on the device: no copy
        moved = resident.to("cpu")  # already there: no copy
        _ = resident[on_device] + offsets + flips + moved[:4]
        scale = resident + torch.tensor(2.0)  # a host scalar mixed into a device op: 3
        assert (traffic.copies, traffic.reads) == (3, 0)
        scale.sum().item()  # a read of the device: 1
        torch.tensor([1.0, 2.0]).sum().item()  # a host tensor's value: no wait
        bool(resident.max() > 3)  # 2
        resident.tolist()  # 3
    assert (traffic.copies, traffic.reads) == (3, 3), traffic.where


def test_the_ledger_books_each_step_and_summarises_by_kind(counters):
    traffic = counters.HostTraffic("cpu")
    ledger = counters.StepLedger({"traffic": traffic, "ops": counters.OpCounter()})
    x = torch.ones(3)
    with traffic, ledger.counters["ops"]:
        for step in range(5):
            ledger.open(logs=step == 3)
            y = x * 2
            if step == 3:
                y.sum().item()
        ledger.close()
    summary = ledger.summary(skip=0)
    assert summary["non_logging"]["steps"] == 4 and summary["logging"]["steps"] == 1
    assert summary["non_logging"]["reads_max"] == 0 and summary["logging"]["reads_max"] == 1
    assert summary["non_logging"]["ops_median"] >= 1


@pytest.mark.parametrize("data", [[], [*PAIR, "method=dann"]], ids=["single-domain", "domain-pair"])
def test_a_step_that_writes_no_log_neither_copies_to_the_device_nor_reads_it(fast_cfg, monkeypatch, data):
    bench = load_script("bench_step", monkeypatch)
    counting = bench.Counting({"traffic": bench.HostTraffic("cpu"), "ops": bench.OpCounter()})
    train(fast_cfg(*data, "trainer.max_epochs=4", "trainer.log_every_n_steps=3", "test=false"), [counting])
    summary = counting.ledger.summary()
    assert summary["non_logging"]["steps"] >= 2, summary
    assert summary["non_logging"]["copies_max"] == 0, counting.counters["traffic"].where
    assert summary["non_logging"]["reads_max"] == 0, counting.counters["traffic"].where
    assert summary["logging"]["reads_max"] > 0  # the logged values and the non-finite watch are read


def test_running_accuracy_is_torchmetrics_accuracy_at_one_and_five():
    generator = torch.Generator().manual_seed(0)
    for classes in (4, 12):
        ours = RunningAccuracy(classes)
        top1 = MulticlassAccuracy(classes, average="micro")
        top5 = MulticlassAccuracy(classes, top_k=5, average="micro") if classes > 5 else None
        for size in (7, 16, 3):
            logits = torch.randn(size, classes, generator=generator)
            labels = torch.randint(0, classes, (size,), generator=generator)
            ours.update(logits, labels)
            top1.update(logits, labels)
            if top5 is not None:
                top5.update(logits, labels)
        values = ours.compute(reduce=lambda counts: counts * 2)  # two devices that saw the same
        assert values["acc"] == pytest.approx(float(top1.compute()), abs=1e-6)
        if top5 is not None:
            assert values["acc_top5"] == pytest.approx(float(top5.compute()), abs=1e-6)
        else:
            assert "acc_top5" not in values
        ours.reset()
        assert ours.seen == 0 and int(ours.correct.sum()) == 0


def test_the_tensorboard_logger_flushes_once_not_every_logging_step(fast_cfg, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    flushes = []
    original = SummaryWriter.flush
    monkeypatch.setattr(SummaryWriter, "flush", lambda self: flushes.append(1) or original(self))
    cfg = fast_cfg("logger=tensorboard", "trainer.max_epochs=2", "trainer.log_every_n_steps=1")
    summary = train(cfg)
    assert summary["global_step"] >= 10 and len(flushes) <= 3  # hparams.yaml, the end of the run
    events = EventAccumulator(
        str(next((Path(cfg.paths.output_dir) / "tensorboard").rglob("events.*")).parent)
    )
    events.Reload()
    assert len(events.Scalars("train/loss")) == summary["global_step"]  # every step's value is there
