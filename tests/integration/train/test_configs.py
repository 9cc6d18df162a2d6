"""Every config composes: each experiment, and each option of each group."""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from conftest import CONF_DIR, compose_config
from transferlab.pipeline import pretraining_config
from transferlab.utils.schema import validate_config
from transferlab.utils.selection import check_selection


def fill_missing_root(cfg: DictConfig) -> DictConfig:
    """ImageFolder has no default root (``???``): give it one, as a user must. Pretrained weights
    named by the benchmarks' protocol would be downloaded: composing is checked without them."""
    if OmegaConf.is_missing(cfg.data, "root"):
        cfg.data.root = "/some/where"
    if cfg.net.get("weights") and not str(cfg.net.weights).endswith((".pth", ".pt", ".safetensors")):
        cfg.net.weights = None
    return cfg


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_there_are_experiments_and_the_source_ones_exist():
    assert {"cifar10_source", "digits_source", "imagefolder_source"} <= set(EXPERIMENTS)


def accepted_arguments(cls: type) -> set[str]:
    """Keyword arguments a method's constructor takes, through its ``**kwargs`` chain."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment, tmp_path: Path):
    cfg = fill_missing_root(compose_config([f"experiment={experiment}"], tmp_path))
    assert cfg.task_name == experiment
    validate_config(cfg)  # every key is an option of what it builds, with the right type
    # the objects it names exist and accept the configured arguments
    net = hydra.utils.instantiate(cfg.net, num_classes=3)
    assert net.num_classes == 3
    hydra.utils.instantiate(cfg.data)
    method_cls = hydra.utils.get_class(cfg.method._target_)
    unknown = set(cfg.method) - {"_target_"} - accepted_arguments(method_cls)
    assert not unknown, f"{experiment}: {method_cls.__name__} does not take {unknown}"
    if cfg.get("pretrain"):  # a pipeline: its pretraining stages must build too, and feed a known key
        assert cfg.pretrain.pass_to.split(".")[-1] in accepted_arguments(method_cls)
        stage = pretraining_config(cfg)
        while stage is not None:
            check_selection(stage)  # an adaptation run's select=<validator> is not its source stage's
            hydra.utils.instantiate(stage.data)
            stage_net = hydra.utils.instantiate(stage.net, num_classes=3)
            stage_cls = hydra.utils.get_class(stage.method._target_)
            if stage.get("pretrain"):  # fed by a stage of its own (LP-FT's probe): its arguments here
                assert not set(stage.method) - {"_target_"} - accepted_arguments(stage_cls)
                assert stage.pretrain.pass_to.split(".")[-1] in accepted_arguments(stage_cls)
                stage = pretraining_config(stage)
            else:
                hydra.utils.instantiate(stage.method, _partial_=True)(net=stage_net)
                stage = None
    else:
        hydra.utils.instantiate(cfg.method, _partial_=True)(net=net)


@pytest.mark.parametrize(
    ("group", "option"),
    [
        (g, o)
        for g in ("data", "net", "trainer", "logger", "callbacks", "debug", "launcher", "hparams_search")
        for o in options(g)
    ],
)
def test_every_group_option_composes(group, option, tmp_path: Path):
    cfg = fill_missing_root(compose_config([f"{group}={option}"], tmp_path))
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    validate_config(cfg)
    if group == "net":
        assert cfg.net._target_ in (f"transferlab.nets.{option}", f"transferlab.nets.{option}_net")


def test_the_cifar10_source_experiment_is_cifar10_with_a_resnet(tmp_path: Path):
    cfg = compose_config(["experiment=cifar10_source"], tmp_path)
    assert cfg.data._target_.endswith("CIFAR10DataModule")
    assert cfg.method.scheduler.T_max == cfg.trainer.max_epochs


def test_eval_config_takes_a_checkpoint_and_optional_data(tmp_path: Path):
    cfg = compose_config(["ckpt_path=x.ckpt"], tmp_path, "eval")
    assert cfg.ckpt_path == "x.ckpt" and "data" not in cfg
    cfg = compose_config(["ckpt_path=x.ckpt", "data=digits"], tmp_path, "eval")
    assert cfg.data._target_.endswith("DigitsDataModule")


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.endswith("_distill")])
@pytest.mark.parametrize("recipe", options("distill"))
def test_every_distillation_recipe_composes_on_every_distillation_experiment(
    experiment, recipe, tmp_path: Path
):
    method = compose_config([f"experiment={experiment}", f"distill={recipe}"], tmp_path).method
    # a recipe is a delta: the losses are exactly those its own file adds, none switched off
    added = yaml.safe_load((CONF_DIR / "distill" / f"{recipe}.yaml").read_text()) or {}
    named = {key.split("@method.losses.")[1] for entry in added.get("defaults", []) for key in entry}
    assert set(method.losses) == named
    assert all(loss.lam > 0 for loss in method.losses.values())
    # DistillModule refuses cached teacher logits on augmented inputs (they change every epoch)
    assert not (method.get("cache_teacher_logits") and method.teacher_input == "augmented")


def test_a_borrowed_normalisation_is_read_from_its_datamodule_and_written_nowhere_else(tmp_path: Path):
    from transferlab.data import CIFAR10DataModule
    from transferlab.utils.config import flat_config
    from transferlab.utils.errors import ConfigError

    borrowed = compose_config(["data=cifar10_c"], tmp_path)
    assert list(borrowed.data.mean) == list(CIFAR10DataModule.default_mean)
    assert list(borrowed.data.std) == list(CIFAR10DataModule.default_std)
    literal = compose_config(
        ["data=cifar10_c", "data.mean=[0.4914,0.4822,0.4465]", "data.std=[0.2470,0.2435,0.2616]"], tmp_path
    )
    assert flat_config(borrowed) == flat_config(literal)  # the same run: digests and caches unchanged
    spelled = [p for p in CONF_DIR.rglob("*.yaml") if "0.4914" in p.read_text()]
    assert not spelled, f"CIFAR-10's statistics copied into {spelled}: use ${{stats:cifar10.mean}}"
    with pytest.raises(
        ConfigError, match=r"^data.mean: \$\{stats:cifar11.mean\}: use \$\{stats:<dataset>.mean\}"
    ):
        validate_config(compose_config(["data=cifar10_c", "data.mean=${stats:cifar11.mean}"], tmp_path))
