"""The feature space of an adaptation run: A-distance, t-SNE and TensorBoard's projector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import PAIR, compose_config, with_overrides
from transferlab.analysis.feature_space import a_distance
from transferlab.report.sweep import summarize
from transferlab.train import train
from transferlab.utils.errors import ConfigError


def test_a_distance_is_zero_for_one_distribution_and_two_for_separable_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    assert abs(a_distance(a, b)) < 0.3  # ε near 1/2: indistinguishable
    assert a_distance(a, b + 3.0) == 2.0  # ε = 0: separable
    shifted = a_distance(a, b + 0.25)  # a partial shift: in between, and symmetric in the domains
    assert 0.5 < shifted < 1.9
    assert a_distance(b + 0.25, a) == pytest.approx(shifted, abs=0.2)
    # 2(1 − 2ε) from the held-out error: a shift along one direction of 32 gives ε = Φ(−Δ/2)
    one_direction = b.copy()
    one_direction[:, 0] += 2.0
    expected = 2 * (1 - 2 * 0.1587)  # Φ(−1) = 0.1587
    assert a_distance(a, one_direction) == pytest.approx(expected, abs=0.25)


def pair_run(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config(
        with_overrides(
            PAIR,
            "method=dann",
            "trainer.max_epochs=1",
            "logger=tensorboard",
            "~callbacks.progress_bar",
            "trainer.enable_progress_bar=false",
            "feature_space.images=40",
            "feature_space.tsne=both",
            *overrides,
        ),
        tmp_path / "run",
    )
    return train(cfg)


def test_an_adaptation_run_writes_its_feature_space(tmp_path: Path):
    summary = pair_run(tmp_path)
    run = tmp_path / "run"
    for stage in ("start", "end"):
        distance = summary["final"][f"feature/a_distance_{stage}"]
        assert -2.0 <= distance <= 2.0
        assert summary["reports"]["feature_space"][f"a_distance_{stage}"] == pytest.approx(distance, abs=1e-4)
        assert (run / "feature_space" / f"tsne_{stage}.png").stat().st_size > 10_000
    tensorboard = run / "tensorboard"
    assert "embeddings" in (tensorboard / "projector_config.pbtxt").read_text()
    metadata = sorted(tensorboard.glob("*/features_*/metadata.tsv"))
    assert [p.parent.name for p in metadata] == ["features_start", "features_end"]
    rows = metadata[0].read_text().splitlines()
    assert rows[0] == "domain\tclass" and len(rows) == 1 + 40 + 40
    assert {row.split("\t")[0] for row in rows[1:]} == {"source", "target"}
    assert all((p.parent / "sprite.png").is_file() for p in metadata)  # the thumbnails
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"feature_space/tsne_start", "feature_space/tsne_end"} <= set(events.Tags()["images"])
    assert "feature/a_distance_end" in events.Tags()["scalars"]


def test_any_run_on_request_and_none_when_off(tmp_path: Path):
    single = compose_config(
        ["data=digits", "net=cnn", "trainer.max_epochs=1", "logger=none", "~callbacks.progress_bar",
         "trainer.enable_progress_bar=false", "feature_space.enabled=true", "feature_space.images=30",
         "feature_space.projector=false"],
        tmp_path / "single",
    )  # fmt: skip
    summary = train(single)
    assert "feature/a_distance_end" in summary["final"]  # its training vs its test images
    assert (tmp_path / "single" / "feature_space" / "tsne_end.png").is_file()
    off = pair_run(tmp_path / "off", "feature_space.enabled=false")
    assert not any(k.startswith("feature/") for k in off["final"])


def test_a_sweep_summary_carries_the_a_distance_per_arm(tmp_path: Path):
    for number, (method, seed, start, end) in enumerate(
        [
            ("source_only", 0, 1.9, 1.8),
            ("source_only", 1, 1.8, 1.8),
            ("dann", 0, 1.9, 0.9),
            ("dann", 1, 1.8, 1.1),
        ]
    ):
        job = tmp_path / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}", f"seed={seed}"]))
        final = {"test/acc": 0.5, "feature/a_distance_start": start, "feature/a_distance_end": end}
        (job / "metrics.json").write_text(json.dumps({"final": final}))
    result = summarize([tmp_path])
    rows = {r["method"]: r for r in result["feature_space"]}
    assert rows["dann"]["mean"] == pytest.approx(1.0) and rows["dann"]["start"]["mean"] == pytest.approx(1.85)
    assert "## Feature space: A-distance" in result["table"]
    assert "| dann | 2 | 1.850 ± 0.071 | 1.000 ± 0.141 | -0.850 |" in result["table"]


def test_a_bad_setting_is_one_line(tmp_path: Path):
    """The entry points unwrap Hydra's instantiation error to its cause (``utils.entry``)."""
    with pytest.raises(Exception) as err:  # Hydra's wrapper, unwrapped below
        pair_run(tmp_path, "feature_space.enabled=sometimes")
    cause = err.value.__cause__ or err.value
    assert isinstance(cause, ConfigError)
    assert str(cause) == "feature_space.enabled='sometimes'; use auto, true or false"


def test_a_resumed_run_keeps_the_first_run_s_start_and_measures_its_own_end(tmp_path: Path):
    first = pair_run(tmp_path / "first", "feature_space.tsne=false", "feature_space.projector=false")
    last = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    resumed = pair_run(
        tmp_path / "second",
        "feature_space.tsne=false",
        "feature_space.projector=false",
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
    )
    start = first["final"]["feature/a_distance_start"]
    assert resumed["final"]["feature/a_distance_start"] == pytest.approx(start)  # not measured again
    assert resumed["reports"]["feature_space"]["a_distance_start"] == pytest.approx(start, abs=1e-4)
    assert "start_seconds" in resumed["reports"]["feature_space"]  # the first run's record
    assert resumed["global_step"] == 2 * first["global_step"]
