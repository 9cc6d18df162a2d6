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
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FAST, RunsCodeWhenUnpickled, compose_config, entry_runner, run_entry, write_image_tree
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[3]


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
        "method.lamda is not an option of transferlab.methods.finetune.FinetuneModule; valid options: ",
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
        "select=snd2 is not a validator of this run; the known ones: bnm, dev, entropy, im, oracle, snd, "
        "source_acc, source_loss",
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
    # --- a checkpoint handed to a run, on every route: checked against the run's contract at start
    (
        "teacher-other-size",
        "train",
        ["method=distill", "distill=kd", "method.teacher_ckpt={at32}"],
        "method.teacher_ckpt={at32_file}: its net was fed other images than this run's; feed it as it "
        "was trained: data.image_size=32 (this run: 16)",
    ),
    (
        "teacher-other-classes",
        "train",
        [
            "data=digits",
            "net=cnn",
            "data.classes=[4,5,6,7]",
            "method=distill",
            "distill=kd",
            "method.teacher_ckpt={digits}",
        ],
        "it was trained on classes ['0', '1', '2', '3'] and this run's data has ['4', '5', '6', '7']",
    ),
    (
        "teacher-other-class-count",
        "train",
        ["data.num_classes=3", "method=distill", "distill=kd", "method.teacher_ckpt={at16}"],
        "it predicts 4 classes and this run's data has 3",
    ),
    (
        "teacher-other-normalisation",
        "train",
        ["+data.mean=[0.1,0.1,0.1]", "method=distill", "distill=kd", "method.teacher_ckpt={at16}"],
        "data.mean=[0.5,0.5,0.5] (this run: [0.1,0.1,0.1])",
    ),
    (
        "teacher-missing",
        "train",
        ["method=distill", "distill=kd", "method.teacher_ckpt=/no/such.ckpt"],
        "checkpoint not found: method.teacher_ckpt=/no/such.ckpt",
    ),
    (
        "teacher-truncated",
        "train",
        ["method=distill", "distill=kd", "method.teacher_ckpt={truncated}"],
        "cannot read checkpoint {truncated}",
    ),
    (
        "source-other-size",
        "train",
        ["method=finetune", "method.source_ckpt={at32}"],
        "method.source_ckpt={at32_file}: its net was fed other images than this run's",
    ),
    (
        "source-other-normalisation",
        "train",
        ["+data.std=[0.9,0.9,0.9]", "method=finetune", "method.source_ckpt={at16}"],
        "data.std=[0.25,0.25,0.25] (this run: [0.9,0.9,0.9])",
    ),
    (
        "source-truncated",
        "train",
        ["method=finetune", "method.source_ckpt={truncated}"],
        "cannot read checkpoint {truncated}",
    ),
    (
        "resume-other-method",
        "train",
        ["ckpt_path={at16_last}", "method=distill", "distill=kd", "method.teacher_ckpt={at16}"],
        "it is a checkpoint of transferlab.methods.supervised.SupervisedModule and this run trains "
        "transferlab.methods.distill.DistillModule",
    ),
    (
        "resume-other-net",
        "train",
        ["ckpt_path={at16_last}", "net=resnet8"],
        "its net differs from this run's (net.",
    ),
    (
        "resume-other-classes",
        "train",
        ["ckpt_path={at16_last}", "data.num_classes=3"],
        "it predicts 4 classes and this run's data has 3",
    ),
    (
        "resume-other-size",
        "train",
        ["ckpt_path={at16_last}", "data.image_size=32"],
        "data.image_size=16 (this run: 32)",
    ),
    ("resume-truncated", "train", ["ckpt_path={truncated}"], "cannot read checkpoint {truncated}"),
    (
        "eval-other-size",
        "eval",
        ["ckpt_path={at16_last}", "data=synthetic", "data.image_size=32"],
        "data.image_size=16 (this run: 32)",
    ),
    (
        "eval-other-classes",
        "eval",
        ["ckpt_path={digits}", "data=digits", "data.image_size=16", "data.classes=[4,5,6,7]"],
        "it was trained on classes ['0', '1', '2', '3'] and this run's data has ['4', '5', '6', '7']",
    ),
    ("eval-truncated", "eval", ["ckpt_path={truncated}"], "cannot read checkpoint {truncated}"),
    (
        "eval-stream",
        "eval",
        ["ckpt_path={at16_last}", "stream=random"],
        "stream='random'; use stream=shuffled or stream=sorted",
    ),
    (
        "tta-other-size",
        "eval",
        ["ckpt_path={at16_last}", "data=synthetic", "data.image_size=32", "tta=tent"],
        "data.image_size=16 (this run: 32)",
    ),
    (
        "tta-lr-nan",
        "eval",
        ["ckpt_path={at16_last}", "tta=tent", "tta.optimizer.lr=nan"],
        "tta.optimizer.lr=nan is not a finite number",
    ),
    (
        "tta-no-batchnorm",
        "eval",
        ["ckpt_path={digits}", "tta=tent"],
        "tta=tent adapts BatchNorm layers and this net has none",
    ),
    (
        "rank-other-size",
        "rank",
        ["data=synthetic", "data.image_size=32", "candidates=[{at16},random:cnn]"],
        "data.image_size=16 (this run: 32)",
    ),
    (
        "rank-missing",
        "rank",
        ["candidates=[/no/such,random:cnn]"],
        "checkpoint not found: candidates=/no/such",
    ),
    ("rank-one-candidate", "rank", ["candidates=[{digits}]"], "ranking needs at least two"),
    (
        "rank-unknown-score",
        "rank",
        ["candidates=[{digits},random:cnn]", "scores=[logm]"],
        "unknown score(s) ['logm']",
    ),
    (
        "rank-unknown-net",
        "rank",
        ["candidates=[{digits},random:cnnn]"],
        "candidate random:cnnn: no net 'cnnn'",
    ),
    # --- hyperparameters: non-finite or out of range, refused by the config check, naming the key
    (
        "kd-temperature-nan",
        "train",
        ["method=distill", "distill=kd", "method.teacher_ckpt={at16}", "method.losses.kd.temperature=nan"],
        "method.losses.kd.temperature=nan is not a finite number",
    ),
    (
        "kd-temperature-zero",
        "train",
        ["method=distill", "distill=kd", "method.teacher_ckpt={at16}", "method.losses.kd.temperature=0"],
        "method.losses.kd.temperature=0 must be > 0",
    ),
    (
        "lam-nan",
        "train",
        ["method=finetune", "method.source_ckpt={at16}", "method.lam=nan"],
        "method.lam=nan is not a finite number",
    ),
    (
        "lam-inf",
        "train",
        ["method=finetune", "method.source_ckpt={at16}", "method.lam=inf"],
        "method.lam=inf is not a finite number",
    ),
    (
        "gamma-nan",
        "train",
        ["data=digits_blended_pair", "method=dann", "method.gamma=nan"],
        "method.gamma=nan is not a finite number",
    ),
    ("lr-nan", "train", ["method.optimizer.lr=nan"], "method.optimizer.lr=nan is not a finite number"),
    ("lr-negative", "train", ["method.optimizer.lr=-0.1"], "method.optimizer.lr=-0.1 must be > 0"),
    ("lr-zero", "train", ["method.optimizer.lr=0"], "method.optimizer.lr=0 must be > 0"),
    (
        "weight-decay-negative",
        "train",
        ["method.optimizer.weight_decay=-1"],
        "method.optimizer.weight_decay=-1 must be >= 0",
    ),
    (
        "momentum-one-or-more",
        "train",
        ["method.optimizer.momentum=1.5"],
        "method.optimizer.momentum=1.5 must be in [0, 1)",
    ),
    ("val-fraction-nan", "train", ["data.val_fraction=nan"], "data.val_fraction=nan is not a finite number"),
    ("image-size-zero", "train", ["data.image_size=0"], "data.image_size=0 must be >= 1"),
    ("seed-negative", "train", ["seed=-1"], "seed=-1 must be in [0, 2**32 - 1]"),
    ("workers-negative", "train", ["data.num_workers=-1"], "data.num_workers=-1 must be >= 0"),
    ("max-epochs-zero", "train", ["trainer.max_epochs=0"], "trainer.max_epochs=0 must be >= 1"),
    (
        "monitor-unknown",
        "train",
        ["callbacks.model_checkpoint.monitor=val/accc"],
        "callbacks.model_checkpoint.monitor=val/accc is not a metric this run logs; its validation metrics: "
        "val/acc, val/loss",
    ),
    (
        "optimized-metric-unknown",
        "train",
        ["optimized_metric=val/accc"],
        "optimized_metric=val/accc is not a metric this run logs",
    ),
    # --- a config group's option that does not exist: one line listing those that do
    (
        "unknown-data-option",
        "train",
        ["data=cifar11"],
        "data=cifar11 is not an option of data; the options: benchmark_domain, cifar10, cifar100,",
    ),
    (
        "unknown-regularizer",
        "train",
        ["method=finetune", "method/regularizer=l2_sp"],
        "method/regularizer=l2_sp is not an option of method/regularizer; the options: bss, delta, l2, l2sp,",
    ),
    (
        "unknown-tta",
        "eval",
        ["ckpt_path={at16_last}", "tta=tentt"],
        "tta=tentt is not an option of tta; the options: bn, none, shot_im, tent",
    ),
    (
        "unknown-borrowed-stats",
        "train",
        ["+data.mean=${{stats:cifar11.mean}}"],
        "error: data.mean: ${{stats:cifar11.mean}}: use ${{stats:<dataset>.mean}} or .std, dataset one of",
    ),
    # --- where a run writes
    (
        "log-dir-unwritable",
        "train",
        ["paths.log_dir=/proc/transferlab"],
        "paths.log_dir=/proc/transferlab cannot be written",
    ),
    (
        "mlflow-store-unwritable",
        "train",
        ["logger=mlflow", "logger.mlflow.tracking_uri=sqlite:////proc/transferlab/mlflow.db"],
        "logger.mlflow cannot write where it logs",
    ),
    ("corrupt-run-record", "train", ["hydra.run.dir={corrupt_run}"], "unreadable: {corrupt_run}/run.json"),
    # --- the error is the last line, after a progress bar
    (
        "nan-loss-under-a-progress-bar",
        "train-with-bars",
        ["method.optimizer.lr=1e30"],
        "non-finite loss at step ",
    ),
    # --- reports and data preparation
    (
        "summarize-unknown-metric",
        "summarize",
        ["{sweep}", "--metric", "test/accuracy"],
        "--metric test/accuracy: no finished job recorded it; the metrics they have: test/acc",
    ),
    (
        "summarize-unknown-control",
        "summarize",
        ["{sweep}", "--control", "method.lam=0.5"],
        "--control method.lam=0.5 is not a swept value of this sweep; its swept values: method.lam: 0, 0.1",
    ),
    ("summarize-no-jobs", "summarize", ["{tree}"], "no jobs (.hydra/overrides.yaml) under {tree}"),
    (
        "prepare-corrupt-mnist",
        "data.prepare",
        ["--datasets", "mnist", "--no-download", "--download-dir", "{mnist_raw}", "--out", "{tmp}/prepared"],
        "cannot read mnist's files in {mnist_raw}",
    ),
]
# what each entry label runs: the module, and the overrides before a case's own
ENTRIES = {
    "train": ("train", FAST),
    "train-with-bars": ("train", [o for o in FAST if "progress_bar" not in o]),
    "eval": ("eval", ["trainer.enable_progress_bar=false"]),
    "rank": ("rank", []),
    "summarize": ("summarize", []),
    "data.prepare": ("data.prepare", []),
}
HYDRA_ENTRIES = {"train", "eval", "rank"}


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
    (tmp / "corrupt_run").mkdir()
    (tmp / "corrupt_run" / "run.json").write_text('{"config_digest": "ab')  # cut short
    at16, at32 = tmp / "at16", tmp / "at32"  # 4 synthetic classes, as FAST trains them
    train(compose_config([*FAST, "logger=none"], at16))
    train(compose_config([*FAST, "logger=none", "data.image_size=32"], at32))
    digits = tmp / "digits"  # classes 0-3 of scikit-learn's digits, 16 px, the article's CNN
    train(compose_config([*FAST, "logger=none", "data=digits", "net=cnn", "data.classes=[0,1,2,3]"], digits))
    (tmp / "truncated.ckpt").write_bytes((at16 / "checkpoints" / "last.ckpt").read_bytes()[:300])
    raw = tmp / "mnist_raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(os.urandom(100))
    write_sweep(tmp / "sweep")
    return {
        "at16": str(at16),
        "at16_last": str(at16 / "checkpoints" / "last.ckpt"),
        "at32": str(at32),
        "at32_file": str(next((at32 / "checkpoints").glob("epoch_*.ckpt"))),
        "digits": str(digits),
        "truncated": str(tmp / "truncated.ckpt"),
        "corrupt_run": str(tmp / "corrupt_run"),
        "mnist_raw": str(tmp / "mnist_raw"),
        "sweep": str(tmp / "sweep"),
        "tmp": str(tmp),
        "tree": str(tmp / "t"),
        "empty_class": str(empty_class),
        "broken": str(broken),
        "archive": str(tmp / "archive"),
        "crafted": str(tmp / "crafted.ckpt"),
        "other_run": str(tmp / "other"),
    }


@dataclass
class Outcome:
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def outcomes(inputs) -> dict[str, Outcome]:
    """Each case as ``python -m transferlab.<module> ...`` would run it, in its own process (forked
    from a server that imported the entry points once: a case costs its own work, not 6 s of
    imports), two at a time."""
    context = entry_runner()

    def run(case: tuple) -> Outcome:
        name, entry, overrides, _ = case
        module, base = ENTRIES[entry]
        where = [f"paths.log_dir={inputs['tmp']}/logs/{name}"] if module in HYDRA_ENTRIES else []
        args = [*base, *where, *[o.format(**inputs) for o in overrides]]
        stderr = Path(inputs["tmp"]) / f"{name}.stderr"
        process = context.Process(target=run_entry, args=(module, args, str(stderr), str(ROOT)))
        process.start()
        process.join(timeout=300)
        status = Path(f"{stderr}.status")
        code = int(status.read_text()) if status.is_file() else process.exitcode
        return Outcome(code, stderr.read_text())

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(run, CASES), strict=True))


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_with_one_clear_line(outcomes, inputs, name, expected):
    result = outcomes[name]
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert expected.format(**inputs) in lines[0]
    assert result.stderr.rstrip().splitlines()[-1] == lines[0]  # the last line the user sees


def test_the_suite_holds_every_entry_point_to_the_same_rule():
    assert len(CASES) >= 60 and {c[1] for c in CASES} == set(ENTRIES)


def write_sweep(root: Path) -> None:
    """A finished 2x2 sweep over method.lam and seed, as summarize reads one."""
    for number, (lam, seed) in enumerate([("0", 0), ("0", 1), ("0.1", 0), ("0.1", 1)]):
        job = root / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- method.lam={lam}\n- seed={seed}\n")
        metrics = {"final": {"test/acc": 0.5 + float(lam) + 0.01 * seed}, "best": {}}
        (job / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("record", ["metrics.json", "failed.json", ".hydra/overrides.yaml"])
def test_summarize_reads_a_corrupt_record_as_unreadable_and_goes_on(tmp_path, record):
    write_sweep(tmp_path / "sweep")
    broken = tmp_path / "sweep" / "3"
    if record == "failed.json":
        (broken / "metrics.json").unlink()
    (broken / record).write_text('{"final": {"test/a')  # cut short by a kill or a full disk
    result = subprocess.run(
        [sys.executable, "-m", "transferlab.summarize", str(tmp_path / "sweep")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"unreadable: {broken / record}" in result.stderr
    rows = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(rows) == 5 and sum("unreadable" in row for row in rows) == 1  # the other three are read


def test_no_bad_input_ran_the_code_inside_a_crafted_checkpoint(outcomes, inputs):
    assert outcomes and not (Path(inputs["tmp"]) / "pwned").exists()
