"""Every bad input of every issue, through the command line: exit status 1 and one clear line.

All the cases run at once (a few processes at a time) in a module fixture; each test then checks
one case's exit status and its single ``error:`` line, with no traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import FAST, RunsCodeWhenUnpickled, write_image_tree

ROOT = Path(__file__).resolve().parents[1]


# (id, entry module, overrides, expected part of the error line); {name} fills from the fixture
CASES = [
    (
        "unknown-class",
        "train",
        ["data.classes=[class_0,cow]"],
        "unknown class name(s) ['cow'] in data.classes; valid names",
    ),
    (
        "too-many-per-class",
        "train",
        ["data.train_per_class=1000"],
        "data.train_per_class=1000 but class 'class_0' has only",
    ),
    (
        "missing-ckpt",
        "train",
        ["ckpt_path=/no/such/last.ckpt"],
        "checkpoint not found: ckpt_path=/no/such/last.ckpt",
    ),
    ("malformed-tree", "train", ["data=imagefolder", "data.root={tree}"], "has no 'train' folder"),
    ("empty-class", "train", ["data=imagefolder", "data.root={empty_class}"], "has no images"),
    (
        "missing-cifar",
        "train",
        ["data=cifar10", "data.root={tmp}", "data.download=false"],
        "point data.root at a folder",
    ),
    ("uneven-batch", "train", ["trainer=ddp_cpu", "data.batch_size=15"], "must divide evenly over 2 devices"),
    (
        "missing-source",
        "train",
        ["method=finetune", "method.source_ckpt=/no/such.ckpt"],
        "not found: method.source_ckpt=/no/such",
    ),
    ("negative-lambda", "train", ["method=finetune", "method.lam=-0.5"], "method.lam=-0.5 must be >= 0"),
    (
        "unknown-corruption",
        "train",
        ["data=cifar10_c", "data.clean_root={tree}", "data.corruption=foggy"],
        "data.corruption='foggy' is not a CIFAR-10-C corruption; use one of: gaussian_noise, shot_noise,",
    ),
    (
        "severity-out-of-range",
        "train",
        ["data=cifar10_c", "data.clean_root={tree}", "data.severity=6"],
        "data.severity=6 is not a severity of CIFAR-10-C; use an integer from 1 to 5",
    ),
    (
        "typo-key",
        "train",
        ["method=finetune", "method.lamda=0.1"],
        "method.lamda is not in the config; valid keys under method: ",
    ),
    (
        "typo-added-key",
        "train",
        ["method=finetune", "+method.lamda=0.1"],
        "method.lamda is not an option of transferlab.methods.FinetuneModule; valid options: ",
    ),
    (
        "typo-trainer",
        "train",
        ["trainer.max_epoch=2"],
        "trainer.max_epoch is not in the config; valid keys under trainer: ",
    ),
    ("wrong-type", "train", ["method=finetune", "method.lam=abc"], "method.lam='abc' has the wrong type: "),
    (
        "test-metric-tuned",
        "train",
        ["optimized_metric=test/acc"],
        "optimized_metric=test/acc is a test metric",
    ),
    ("nan-loss", "train", ["method.optimizer.lr=1e30"], "non-finite loss at step "),
    (
        "unreadable-image",
        "train",
        [
            "data=imagefolder",
            "data.root={broken}",
            "data.num_workers=1",
            "data.mean=[0.5,0.5,0.5]",
            "data.std=[0.2,0.2,0.2]",
        ],
        "cannot read image {broken}/train/b/0001.png",
    ),
    (
        "truncated-cifar",
        "train",
        ["data=cifar10", "data.root={archive}"],
        "cifar-10-python.tar.gz fails its MD5 checksum",
    ),
    (
        "pickled-code-resume",
        "train",
        ["ckpt_path={crafted}"],
        "refusing checkpoint {crafted}: it carries objects",
    ),
    (
        "pickled-code-source",
        "train",
        ["method=finetune", "method.source_ckpt={crafted}"],
        "refusing checkpoint {crafted}: it carries objects",
    ),
    (
        "pickled-code-eval",
        "eval",
        ["ckpt_path={crafted}"],
        "refusing checkpoint {crafted}: it carries objects",
    ),
    ("no-run-to-resume", "train", ["ckpt_path=last"], "ckpt_path=last: no unfinished run of this config"),
    (
        "dir-of-another-config",
        "train",
        ["hydra.run.dir={other_run}"],
        "holds a run of another config (seed: 99 -> 0, ",
    ),
    ("unset-root", "train", ["data=imagefolder"], "data.root is not set (???); pass data.root=<str>"),
    (  # a constructor's ValueError reaches us through Hydra's instantiation: still one line, keyed
        "nested-constructor",
        "train",
        ["method=finetune", "method/regularizer=bss", "method.regularizer.k=0", "method.lam=0.1"],
        "error: method.regularizer: BSS: k=0 must be >= 1",
    ),
    ("data-constructor", "train", ["data.batch_size=0"], "data.batch_size=0 must be a positive integer"),
    (
        "negative-gamma",
        "train",
        ["data=digits_blended_pair", "method=dann", "method.gamma=-1"],
        "method.gamma=-1 must be >= 0: a negative γ makes c(p) negative",
    ),
    (
        "too-many-labelled-target",
        "train",
        ["data=digits_blended_pair", "method=source_only", "data.target_labelled_per_class=100000"],
        "target domain: data.target_labelled_per_class=100000 but class '0' has only",
    ),
    (
        "unknown-validator",
        "train",
        ["data=digits_blended_pair", "method=dann", "select=snd2"],
        "select=snd2 is not a validator of this run; the known ones: source_acc, source_loss, entropy, im, "
        "bnm, snd, dev, oracle",
    ),
    (
        "validator-on-one-domain",
        "train",
        ["select=entropy"],
        "select=entropy picks the checkpoint by a validator, and only the domain-adaptation methods",
    ),
    (
        "eval-missing-ckpt",
        "eval",
        ["ckpt_path=/no/such.ckpt"],
        "checkpoint not found: ckpt_path=/no/such.ckpt",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad")
    empty_class = write_image_tree(tmp / "e", {"a": 1})
    (empty_class / "train" / "b").mkdir()
    (tmp / "t").mkdir()
    broken = write_image_tree(tmp / "broken", {"a": 4, "b": 4})
    (broken / "train" / "b" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut off")
    (tmp / "archive").mkdir()
    (tmp / "archive" / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(2048))
    with open(tmp / "crafted.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}, "payload": RunsCodeWhenUnpickled(tmp / "pwned")}, f)
    (tmp / "other").mkdir()
    (tmp / "other" / "run.json").write_text(json.dumps({"config_digest": "0", "config": {"seed": 99}}))
    return {
        "tmp": str(tmp),
        "tree": str(tmp / "t"),
        "empty_class": str(empty_class),
        "broken": str(broken),
        "archive": str(tmp / "archive"),
        "crafted": str(tmp / "crafted.ckpt"),
        "other_run": str(tmp / "other"),
    }


@pytest.fixture(scope="module")
def outcomes(inputs) -> dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(case: tuple) -> subprocess.CompletedProcess:
        name, module, overrides, _ = case
        base = FAST if module == "train" else []
        args = [*base, f"paths.log_dir={inputs['tmp']}/logs/{name}", *[o.format(**inputs) for o in overrides]]
        command = [sys.executable, "-m", f"transferlab.{module}", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(run, CASES), strict=True))


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_with_one_clear_line(outcomes, inputs, name, expected):
    result = outcomes[name]
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert expected.format(**inputs) in lines[0]


def test_no_bad_input_ran_the_code_inside_a_crafted_checkpoint(outcomes, inputs):
    assert outcomes and not (Path(inputs["tmp"]) / "pwned").exists()
