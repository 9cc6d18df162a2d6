"""CIFAR-10-C built offline and test-time adaptation: the corruptions, the cached tree, BN, TENT
and SHOT-IM against their definitions, and the command line."""

from __future__ import annotations

import copy
import itertools
import json
import statistics
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import compose_config, run_module, write_image_tree
from transferlab.data.cifar10_c import build_corrupted_tree, image_seed
from transferlab.data.corruptions import CORRUPTIONS, FAMILIES, corrupt
from transferlab.losses.tta import EntropyMinimization, InformationMaximizationLoss, prediction_entropy
from transferlab.methods.tta import TestTimeModule
from transferlab.nets.resnet import resnet8
from transferlab.train import train
from transferlab.tta.base import batchnorm_layers
from transferlab.utils.errors import ConfigError
from transferlab.utils.families import option_config

ROOT = Path(__file__).resolve().parents[3]
QUIET = ["logger=none", "~callbacks.progress_bar", "trainer.enable_progress_bar=false"]


def natural_images(n: int = 6) -> list[np.ndarray]:
    """Colour images with smooth regions, an edge and texture: what the corruptions act on."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        coarse = rng.uniform(30, 220, (4, 4, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((32, 32), Image.BICUBIC)).astype(float)
        image[8:20, 10:22] = rng.uniform(30, 220, 3)  # an object with edges
        image += rng.normal(0, 15, image.shape)  # and texture
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def distance(corruption: str, severity: int, images: list[np.ndarray]) -> float:
    return float(
        np.mean(
            [
                np.abs(corrupt(x, corruption, severity, i).astype(float) - x).mean()
                for i, x in enumerate(images)
            ]
        )
    )


def test_the_15_corruptions_in_their_four_families():
    assert len(CORRUPTIONS) == 15
    assert sorted(c for family in FAMILIES.values() for c in family) == sorted(CORRUPTIONS)


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corruption_is_deterministic_keeps_shape_and_dtype_and_changes_the_image(corruption):
    image = natural_images(1)[0]
    a, b = corrupt(image, corruption, 3, seed=7), corrupt(image, corruption, 3, seed=7)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, image)
    state = np.random.get_state()[1].copy()
    corrupt(image, corruption, 5, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was


# the authors' parameters do not grow in every step for these three: glass blur's sigma falls
# from severity 3 to 4 as its iterations double, frost's image weight rises as the picture's
# falls, and elastic_transform's affine part shrinks from 8% to 3% of the image while its elastic
# part grows, so its pixel distance falls with severity (as in the released CIFAR-10-C)
NOT_MONOTONE = {"glass_blur", "frost", "elastic_transform"}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_the_distance_from_the_clean_image_grows_with_severity(corruption):
    images = natural_images()
    distances = [distance(corruption, s, images) for s in (1, 2, 3, 4, 5)]
    if corruption == "elastic_transform":
        assert distances[0] > distances[4] > 0
    elif corruption in NOT_MONOTONE:
        assert distances[4] > distances[0] > 0
    else:
        # motion blur's severities 3 and 4 differ in the kernel's length only, past its 2σ tail
        assert all(b > a - 0.05 for a, b in itertools.pairwise(distances)), distances
        assert distances[4] > distances[2] > distances[0], distances


def test_the_corrupted_tree_is_built_once_with_its_manifest_and_each_image_is_its_seeded_corruption(tmp_path):
    clean = write_image_tree(tmp_path / "cifar10", {"cat": 3, "dog": 2}, size=32)
    out = build_corrupted_tree(clean, tmp_path / "cache", "fog", 4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corruption"] == "fog" and manifest["severity"] == 4 and manifest["images"] == 10
    files = sorted(out.rglob("*.png"))
    assert len(files) == 10
    relative = Path("train/dog/0001.png")
    clean_pixels = np.asarray(Image.open(clean / relative).convert("RGB"))
    expected = corrupt(clean_pixels, "fog", 4, image_seed("fog", 4, relative))
    assert np.array_equal(np.asarray(Image.open(out / relative)), expected)
    stamp = (out / relative).stat().st_mtime_ns
    assert build_corrupted_tree(clean, tmp_path / "cache", "fog", 4) == out  # reused, not rebuilt
    assert (out / relative).stat().st_mtime_ns == stamp
    other = build_corrupted_tree(clean, tmp_path / "cache", "fog", 5)
    assert other != out and not list(tmp_path.glob("cache/*.partial-*"))


def test_prediction_entropy_and_the_tta_objectives_against_their_formulas():
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    p = logits.softmax(1)
    assert torch.allclose(prediction_entropy(logits), -(p * p.log()).sum(1))
    assert torch.allclose(EntropyMinimization()(logits), -(p * p.log()).sum(1).mean())
    eps = 1e-5
    mean = p.mean(0)
    expected = -(p * (p + eps).log()).sum(1).mean() + (mean * (mean + eps).log()).sum()
    assert torch.allclose(InformationMaximizationLoss()(logits), expected)
    assert torch.autograd.gradcheck(lambda x: EntropyMinimization()(x), (logits,))
    assert torch.autograd.gradcheck(lambda x: InformationMaximizationLoss()(x), (logits,))
    uniform = torch.zeros(3, 5, dtype=torch.float64)
    assert EntropyMinimization()(uniform).item() == pytest.approx(np.log(5))


def member(name: str):
    """The member that ``tta=<name>`` names, built from its YAML."""
    return hydra.utils.instantiate(option_config("tta", name).adaptation)


def tta_module(adaptation: str, net: torch.nn.Module | None = None, **kwargs) -> TestTimeModule:
    torch.manual_seed(0)
    net = net or resnet8(num_classes=3)
    optimizer = None
    if adaptation == "tent":
        optimizer = lambda params: torch.optim.Adam(params, lr=1e-3)  # noqa: E731
    elif adaptation == "shot_im":
        optimizer = lambda params: torch.optim.SGD(params, lr=1e-2)  # noqa: E731
    module = TestTimeModule(net, adaptation=member(adaptation), optimizer=optimizer, **kwargs)
    module.eval()
    module.on_test_start()
    return module


def first_batchnorm_io(module: TestTimeModule, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    layer = batchnorm_layers(module.net)[0]
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(input=i[0].clone(), output=o.clone()))
    module.evaluation_forward(None, images)
    handle.remove()
    return seen["input"], seen["output"]


def test_bn_adaptation_normalises_with_the_batch_statistics_computed_by_hand():
    module = tta_module("bn")
    images = torch.randn(16, 3, 16, 16) * 2 + 1
    x, y = first_batchnorm_io(module, images)
    layer = batchnorm_layers(module.net)[0]
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + layer.eps) * layer.weight.view(1, -1, 1, 1) + layer.bias.view(
        1, -1, 1, 1
    )
    assert torch.allclose(y, expected, atol=1e-5)
    plain = tta_module("none")  # the source's running statistics instead
    assert not torch.allclose(first_batchnorm_io(plain, images)[1], y, atol=1e-3)


def test_one_tent_step_moves_only_the_batchnorm_affine_parameters_by_adams_first_step():
    module = tta_module("tent")
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    images = torch.randn(16, 3, 16, 16)
    reference = copy.deepcopy(module.net)  # the same step written out: ∇ of the mean entropy
    affine = {n: p for n, p in reference.named_parameters() if n in dict(affine_names(module))}
    loss = EntropyMinimization()(reference(images))
    gradients = dict(zip(affine, torch.autograd.grad(loss, list(affine.values())), strict=True))
    logits = module.evaluation_forward(None, images)
    assert torch.allclose(logits, reference(images).detach(), atol=1e-6)  # predicted before the step
    for name, param in module.net.named_parameters():
        if name in gradients:  # Adam's first step: lr·g/(|g| + ε), bias corrections cancelling
            g = gradients[name]
            assert torch.allclose(param.detach(), before[name] - 1e-3 * g / (g.abs() + 1e-8), atol=1e-7), name
        else:
            assert torch.equal(param.detach(), before[name]), name


def affine_names(module: TestTimeModule) -> list[tuple[str, torch.nn.Parameter]]:
    ids = {id(p) for layer in batchnorm_layers(module.net) for p in (layer.weight, layer.bias)}
    return [(n, p) for n, p in module.net.named_parameters() if id(p) in ids]


def test_shot_im_trains_the_feature_extractor_and_leaves_the_head_and_episodic_mode_resets():
    module = tta_module("shot_im")
    head = {n: p.detach().clone() for n, p in module.net.head.named_parameters()}
    backbone = [p.detach().clone() for p in module.net.backbone.parameters()]
    module.evaluation_forward(None, torch.randn(16, 3, 16, 16))
    assert all(torch.equal(p, head[n]) for n, p in module.net.head.named_parameters())
    assert any(not torch.equal(p, b) for p, b in zip(module.net.backbone.parameters(), backbone, strict=True))
    episodic = tta_module("tent", episodic=True)
    images = torch.randn(16, 3, 16, 16)
    first = episodic.evaluation_forward(None, images)
    second = episodic.evaluation_forward(None, images)  # from the source again: the same prediction
    assert torch.allclose(first, second, atol=1e-6)
    online = tta_module("tent")
    assert not torch.allclose(
        online.evaluation_forward(None, images), online.evaluation_forward(None, images)
    )


def test_bn_and_tent_refuse_a_net_without_batchnorm():
    from transferlab.nets.cnn import cnn

    for adaptation in ("bn", "tent"):
        with pytest.raises(
            ConfigError, match=f"tta={adaptation} adapts BatchNorm layers and this net has none"
        ):
            TestTimeModule(
                cnn(num_classes=3, input_size=16), adaptation=member(adaptation), optimizer=torch.optim.Adam
            )


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Path:
    """An offline data folder with a CIFAR-format tree (32 px, 3 classes)."""
    root = tmp_path_factory.mktemp("offline")
    write_image_tree(root / "cifar10", {"airplane": 12, "bird": 12, "cat": 12}, size=32)
    return root


@pytest.fixture(scope="module")
def source(offline, tmp_path_factory) -> Path:
    """The CIFAR-10-C source recipe, one epoch on the test-made tree."""
    out = tmp_path_factory.mktemp("source")
    common = [f"paths.offline_data={offline}", f"paths.data_dir={out / 'data'}"]
    train(
        compose_config(["experiment=cifar10c_source", "trainer.max_epochs=1", *QUIET, *common], out / "run")
    )
    return out / "run"


def test_tent_from_the_command_line_on_a_corrupted_stream_and_a_net_without_batchnorm_refused(
    offline, source, tmp_path
):
    common = [f"paths.offline_data={offline}", f"paths.data_dir={tmp_path / 'data'}"]
    result = run_module(
        "eval",
        f"ckpt_path={source}",
        "data=cifar10_c",
        "data.corruption=gaussian_noise",
        "data.severity=5",
        "tta=tent",
        "tta.batch_size=4",
        "stream=sorted",
        *common,
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert summary["tta"] == {"adaptation": "tent", "episodic": False, "stream": "sorted"}
    assert 0.0 <= summary["final"]["test/acc"] <= 1.0
    assert list((tmp_path / "data" / "cifar10_c").glob("gaussian_noise-5-*/manifest.json"))
    no_bn = tmp_path / "cnn"
    train(
        compose_config(
            ["experiment=cifar10c_source", "net=cnn", "trainer.max_epochs=1", *QUIET, *common], no_bn
        )
    )
    refused = run_module(
        "eval",
        f"ckpt_path={no_bn}",
        "data=cifar10_c",
        "tta=tent",
        *common,
        f"hydra.run.dir={tmp_path / 'e2'}",
    )
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0 and len(errors) == 1, refused.stderr[-2000:]
    assert "tta=tent adapts BatchNorm layers and this net has none" in errors[0]


def test_an_evaluation_sweep_runs_its_jobs_at_once_with_the_joblib_launcher(offline, source, tmp_path):
    """``python -m transferlab.eval -m launcher=joblib``: the TTA sweep's jobs in two processes, each
    job's result where the basic launcher puts it, and equal to the same job run on its own."""
    common = [f"paths.offline_data={offline}", f"paths.data_dir={tmp_path / 'data'}", "data=cifar10_c"]
    common += [f"ckpt_path={source}", "data.corruption=fog", "tta.batch_size=4"]
    swept = run_module(
        "eval", "-m", "launcher=joblib", "hydra.launcher.n_jobs=2", "tta=none,bn", *common,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in swept.stdout + swept.stderr
    jobs = {
        json.loads((job / "metrics.json").read_text()).get("tta", {"adaptation": "none"})["adaptation"]: job
        for job in (tmp_path / "sweep").iterdir()
        if (job / "metrics.json").is_file()
    }
    assert set(jobs) == {"none", "bn"}
    alone = run_module("eval", "tta=bn", *common, f"hydra.run.dir={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr[-2000:]
    final = [json.loads((d / "metrics.json").read_text())["final"] for d in (jobs["bn"], tmp_path / "alone")]
    assert final[0]["test/acc"] == final[1]["test/acc"]


def test_bn_statistics_reestimates_each_layer_from_the_images_and_reports_the_source_error(
    source, tmp_path, monkeypatch, capsys
):
    """scripts/bn_statistics.py: re-estimated statistics are those of the images (the first layer's
    mean by hand), the net itself is left alone, and the running row is the source's test error."""
    from conftest import load_script

    script = load_script("bn_statistics", monkeypatch)
    torch.manual_seed(0)
    net = resnet8(num_classes=10)
    images = torch.randn(12, 3, 16, 16)
    before = copy.deepcopy(net.state_dict())
    restated = script.with_statistics_of(net, images, batch_size=4)
    first = batchnorm_layers(restated)[0]
    with torch.no_grad():
        conv_out = net.backbone[0](images)  # the stem's convolution, before the first BatchNorm
    # the mean over all images; the variance the average of the three batches' unbiased variances
    torch.testing.assert_close(first.running_mean, conv_out.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    batch_vars = [chunk.transpose(0, 1).flatten(1).var(1) for chunk in conv_out.split(4)]
    torch.testing.assert_close(first.running_var, torch.stack(batch_vars).mean(0), rtol=1e-5, atol=1e-6)
    assert not first.training and first.momentum is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    rows = script.main(["--ckpt", str(source), "--images", "20"])
    assert len(rows) == 4 and all(0.0 <= v <= 1.0 for v in rows.values())
    trained = json.loads((source / "metrics.json").read_text())["final"]["test/acc"]
    assert rows["running (as trained)"] == pytest.approx(1 - trained, abs=1e-6)
    assert "| running (as trained) |" in capsys.readouterr().out


def test_the_study_refuses_adaptation_without_its_source_model(tmp_path: Path, monkeypatch, capsys):
    from conftest import load_script

    study = load_script("cifar10c_study", monkeypatch)
    with pytest.raises(SystemExit):
        study.main(["--parts", "da", "--out", str(tmp_path)])
    assert "no finished source model in" in capsys.readouterr().err


def test_every_adaptation_method_runs_on_the_cifar10_to_cifar10c_pair(offline, tmp_path):
    """The pair under the debug preset: the source stage and DANN, one batch each."""
    cfg = compose_config(
        [
            "experiment=cifar10c_adaptation",
            "debug=fdr",
            "data.target.corruption=pixelate",
            f"paths.offline_data={offline}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            *QUIET,
        ],
        tmp_path / "run",
    )
    summary = train(cfg)
    assert "test/acc" in summary["final"] and "test/source_acc" in summary["final"]


def test_the_tta_benchmark_times_every_adaptation_against_plain_evaluation(
    offline, source, tmp_path, monkeypatch
):
    from conftest import load_script

    bench = load_script("bench_tta", monkeypatch)
    result = bench.main(
        [
            "--ckpt",
            str(source),
            "--repeats",
            "1",
            "--out",
            str(tmp_path / "bench"),
            f"paths.offline_data={offline}",
            f"paths.data_dir={tmp_path / 'data'}",
        ]
    )
    assert set(result["runs"]) == {"none", "bn", "tent", "shot_im"}
    assert all(len(v) == 1 and v[0] > 0 for v in result["runs"].values())
    assert "| none |" in result["table"] and "| 1.000 |" in result["table"]


def test_the_study_table_averages_stream_orders_and_reports_their_spread(tmp_path: Path, monkeypatch):
    """scripts/cifar10c_study.py: each arm's mean over the 15 corruptions is averaged over the stream
    seeds, with the standard deviation across seeds; one seed gets no spread."""
    from conftest import load_script

    study = load_script("cifar10c_study", monkeypatch)
    number = 0
    for arm, seeds in {"none": [0], "bn": [0, 1, 2]}.items():
        for seed in seeds:
            for i, corruption in enumerate(study.CORRUPTIONS):
                job = tmp_path / str(number)
                (job / ".hydra").mkdir(parents=True)
                overrides = [f"data.corruption={corruption}", "data.severity=5", f"tta={arm}", f"seed={seed}"]
                (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
                accuracy = 0.5 + 0.01 * i + 0.05 * seed  # seed s: error 50 − i − 5·s %
                (job / "metrics.json").write_text(json.dumps({"final": {"test/acc": accuracy}}))
                number += 1
    errors = study.read_errors(tmp_path)
    per_seed = [statistics.fmean(50 - i - 5 * s for i in range(15)) for s in (0, 1, 2)]  # 43, 38, 33
    mean, spread = study.mean_error(errors, 5, "bn")
    assert mean == pytest.approx(statistics.fmean(per_seed)) and spread == pytest.approx(5.0)
    assert study.mean_error(errors, 5, "none") == (pytest.approx(43.0), None)
    assert study.mean_error(errors, [5], "bn") == (mean, spread)
    assert study.mean_error(errors, [4, 5], "bn") == (pytest.approx(float("nan"), nan_ok=True), None)
    table = study.tta_table(errors, [5], clean_acc=0.76)
    assert "| bn (ours) | 45.0 |" in table and "| 38.0 ± 5.0 |" in table
    assert table.split("| none (ours) |")[1].split("\n")[0].endswith("| 43.0 |")


def test_episodic_mode_resets_the_optimiser_as_well_as_the_weights():
    """TENT's episodic reset restores the net and the optimiser's state (Adam's moments and step
    count) before every batch: a batch adapted after another gives what it gives alone. Two steps
    per batch, so the prediction reads the weights the optimiser moved."""
    images = torch.randn(2, 16, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    after_another = tta_module("tent", episodic=True, steps=2)
    after_another.evaluation_forward(None, images[0])
    second = after_another.evaluation_forward(None, images[1])
    alone = tta_module("tent", episodic=True, steps=2).evaluation_forward(None, images[1])
    assert torch.allclose(second, alone, atol=1e-6)
    online = tta_module("tent", episodic=False, steps=2)  # the contrast: online carries both
    online.evaluation_forward(None, images[0])
    assert not torch.allclose(online.evaluation_forward(None, images[1]), alone, atol=1e-6)
