"""Evaluate a checkpoint on the test split: ``python -m transferlab.eval ckpt_path=...``.

The net and the data come from the checkpoint's run contract; ``data=...`` overrides the data
(for example to evaluate on a local copy), as long as the classes match. The data's own test
routes are followed: a domain pair is tested on its target (``test/…``) and its source
(``test/source_…``). ``tta=bn|tent|shot_im`` adapts the model to the test stream as it reads it
(``transferlab/tta/``, run by ``methods/tta.py``; the stream shuffled with ``seed`` unless ``stream=sorted``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.methods.base import ClassificationModule
from transferlab.nets.reference import build_net, interpolate_with_start
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.config import register_resolvers
from transferlab.utils.contract import RunContract, check_handed
from transferlab.utils.entry import preflight, silence_known_warnings, user_errors
from transferlab.utils.errors import ConfigError
from transferlab.utils.log import log
from transferlab.utils.run_files import scalar_metrics, write_json_atomic
from transferlab.utils.schema import validate_config

register_resolvers()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test the checkpoint ``cfg.ckpt_path`` and write ``metrics.json`` in the output directory."""
    validate_config(cfg, ("data", "trainer", "tta"))  # typos, types and ranges: before any work
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is not set; pass ckpt_path=<path to a .ckpt file>")
    checkpoint = open_checkpoint(cfg.ckpt_path, "ckpt_path")
    contract = checkpoint.contract
    net = build_net(checkpoint)
    if cfg.get("wise_alpha") is not None:
        interpolate_with_start(net, checkpoint, float(cfg.wise_alpha))

    module = hydra.utils.instantiate(cfg.tta)(net, contract=contract) if cfg.get("tta") else None
    if cfg.get("stream", "shuffled") not in ("shuffled", "sorted"):
        raise ConfigError(f"stream={cfg.stream!r}; use stream=shuffled or stream=sorted")
    data_cfg = cfg.data if cfg.get("data") else OmegaConf.create(contract.data)
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    fed = RunContract(
        net=contract.net,
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        inputs=datamodule.input_spec(),
    )
    check_handed(contract, fed, "eval", f"ckpt_path={checkpoint.path}")

    if module is None or not module.adapts:  # the data's own test routes
        trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
        trainer.test(
            module or ClassificationModule(net, contract=contract), datamodule=datamodule, verbose=False
        )
    else:  # one test stream, read once, in the order that `stream` sets
        trainer = hydra.utils.instantiate(
            cfg.trainer, logger=False, inference_mode=not module.needs_gradients
        )
        stream = test_stream(datamodule, cfg, module.batch_size, trainer.strategy.root_device)
        trainer.test(module, dataloaders=stream, verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics)
    summary = {"final": metrics, "ckpt_path": str(Path(cfg.ckpt_path).resolve())}
    if cfg.get("wise_alpha") is not None:
        summary["wise_alpha"] = float(cfg.wise_alpha)
    if module is not None and module.adapts:
        summary["tta"] = {"adaptation": module.adaptation, "episodic": module.episodic, "stream": cfg.stream}
    if trainer.is_global_zero:
        write_json_atomic(Path(cfg.paths.output_dir) / "metrics.json", summary)
        log.info("test metrics: %s", metrics)
    return summary


def test_stream(
    datamodule: Any, cfg: DictConfig, batch_size: int, device: torch.device | None = None
) -> Iterable[Any]:
    """The test images as test-time adaptation reads them: shuffled with ``cfg.seed`` (image
    folders are stored class by class, and a class-sorted stream breaks batch statistics) or, with
    ``stream=sorted``, in the files' order; resident on ``device`` where they fit."""
    datasets = getattr(datamodule, "datasets", {})
    if "test" not in datasets:
        raise ConfigError(
            "test-time adaptation reads one test stream; evaluate on single-domain data "
            "(e.g. data=cifar10_c), not a domain pair"
        )
    seed = int(cfg.seed) if cfg.stream == "shuffled" else None
    return datamodule.inference_loader(datasets["test"], batch_size, device or torch.device("cpu"), seed)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    silence_known_warnings()
    with user_errors():
        evaluate(cfg)


def main() -> None:
    preflight("eval", sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
