"""Would the tests notice a wrong gradient? Plausible bugs in the losses, validators, scores and
test-time adaptation, applied one at a time to a copy of ``src/``, each run against the tests that
should catch it; a bug the tests let through is listed and the script exits 1.

    python scripts/mutation_check.py                 # every mutation (about five minutes)
    python scripts/mutation_check.py --only crd      # those whose name contains "crd"

The list grows with the families: a new member's loss brings its own plausible bugs (a sign, a
scale, a detach, a term dropped). Each mutation names the exact text it replaces, which must occur
once in its file (``tests/integration/scripts/test_mutation_check.py`` checks that on every run, so
the list cannot silently go stale); the slow tier runs the whole check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # under src/transferlab/
    old: str
    new: str
    tests: tuple[str, ...]  # what should catch it


ADVERSARIAL = ("tests/unit/methods/test_adversarial_gradients.py",)
ALIGNMENT = (
    "tests/unit/losses/test_alignment_mcc_mdd_jan.py",
    "tests/unit/losses/test_alignment_adversarial_and_kernels.py",
)
DISTILLATION = ("tests/unit/losses/test_distillation_losses.py",)

MUTATIONS = (
    Mutation(
        "adversarial coefficient with the wrong sign (DANN, CDAN, MDD)",
        "methods/adaptation/base.py",
        "self.adversarial_loss(f_s, f_t, logits_s, logits_t, coefficient)",
        "self.adversarial_loss(f_s, f_t, logits_s, logits_t, -coefficient)",
        ADVERSARIAL,
    ),
    Mutation(
        "adversarial coefficient fixed at 1 (DANN, CDAN, MDD)",
        "methods/adaptation/base.py",
        "self.adversarial_loss(f_s, f_t, logits_s, logits_t, coefficient)",
        "self.adversarial_loss(f_s, f_t, logits_s, logits_t, 1.0)",
        ADVERSARIAL,
    ),
    Mutation(
        "MDD's reversal scale dropped",
        "methods/adaptation/mdd.py",
        "return self.reversal_scale * super().reversal_coefficient()",
        "return super().reversal_coefficient()",
        ADVERSARIAL,
    ),
    Mutation(
        "gradient reversal that does not flip the sign",
        "losses/domain.py",
        "return -ctx.coefficient * grad_output, None",
        "return ctx.coefficient * grad_output, None",
        ("tests/unit/methods/test_dann.py", *ALIGNMENT),
    ),
    Mutation(
        "MCC's sample weights not detached",
        "losses/alignment/mcc.py",
        "weights = 1.0 + torch.exp(-entropy(p).detach())",
        "weights = 1.0 + torch.exp(-entropy(p))",
        ALIGNMENT,
    ),
    Mutation(
        "a cross term of the linear JMMD with the wrong sign",
        "losses/alignment/jan.py",
        "return (k[0] + k[1] - k[2] - k[3]).mean()",
        "return (k[0] + k[1] - k[2] + k[3]).mean()",
        ALIGNMENT,
    ),
    Mutation(
        "CORAL divided by 4·D instead of 4·D²",
        "losses/alignment/coral.py",
        "/ (4.0 * d * d)",
        "/ (4.0 * d)",
        ALIGNMENT,
    ),
    Mutation(
        "L2-SP pulling toward zero instead of the source",
        "losses/regularizers/l2sp.py",
        "squared_norm(p - inputs.source_weights[name] for name, p in inputs.backbone)",
        "squared_norm(p for name, p in inputs.backbone)",
        ("tests/unit/losses/test_regularizers.py",),
    ),
    Mutation(
        "KD without its T² factor",
        "losses/distillation/kd.py",
        "return temperature * temperature * kl",
        "return kl",
        DISTILLATION,
    ),
    Mutation(
        "RKD with the student's distances detached",
        "losses/distillation/rkd.py",
        "F.smooth_l1_loss(pairwise_distances(student), teacher_distances)",
        "F.smooth_l1_loss(pairwise_distances(student).detach(), teacher_distances)",
        DISTILLATION,
    ),
    Mutation(
        "RKD with the student's angles detached",
        "losses/distillation/rkd.py",
        "F.smooth_l1_loss(triplet_angles(student), teacher_angles)",
        "F.smooth_l1_loss(triplet_angles(student).detach(), teacher_angles)",
        DISTILLATION,
    ),
    Mutation(
        "CRD's memory momentum μ ↔ 1 − μ",
        "losses/distillation/crd.py",
        "moved = memory[index] * self.momentum + v.detach() * (1 - self.momentum)",
        "moved = memory[index] * (1 - self.momentum) + v.detach() * self.momentum",
        DISTILLATION,
    ),
    Mutation(
        "CRD's positive not in column 0",
        "losses/distillation/crd.py",
        "drawn[:, 0] = index",
        "drawn[:, -1] = index",
        DISTILLATION,
    ),
    Mutation(
        "CRD's temperature multiplying",
        "losses/distillation/crd.py",
        "torch.bmm(self.memory_teacher[drawn].detach(), v_s[:, :, None])[..., 0] / self.temperature",
        "torch.bmm(self.memory_teacher[drawn].detach(), v_s[:, :, None])[..., 0] * self.temperature",
        DISTILLATION,
    ),
    Mutation(
        "DEV without the N_s/N_t factor",
        "validators/dev.py",
        "return p_target / (1 - p_target) * len(source) / len(target)",
        "return p_target / (1 - p_target)",
        ("tests/unit/validators/test_validators.py",),
    ),
    Mutation(
        "BNM not divided by the number of images",
        "validators/bnm.py",
        "(torch.linalg.svdvals(p).sum() / p.shape[0]).item()",
        "torch.linalg.svdvals(p).sum().item()",
        ("tests/unit/validators/test_validators.py",),
    ),
    Mutation(
        "SND counting each image as its own neighbour",
        "validators/snd.py",
        'similarity.fill_diagonal_(float("-inf"))',
        "similarity = similarity",
        ("tests/unit/validators/test_validators.py",),
    ),
    Mutation(
        "TTA's episodic mode not resetting the optimiser",
        "methods/tta.py",
        'self.adapt_optimizer.load_state_dict(self._source_state["optimizer"])',
        "pass",
        (
            "tests/integration/eval/test_tta.py::test_episodic_mode_resets_the_optimiser_as_well_as_the_weights",
        ),
    ),
    Mutation(
        "the warm-up counted from the alignment's start where the protocol counts from the run's",
        "methods/adaptation/base.py",
        'origin = before if self.warmup_from == "alignment" else 0',
        "origin = before",
        ("tests/unit/losses/test_alignment_mcc_mdd_jan.py",),
    ),
    Mutation(
        "the warm-up's fraction of the run ignored",
        "methods/adaptation/base.py",
        "span = max(self.warmup * (total - origin), 1.0)",
        "span = max(total - origin, 1.0)",
        ("tests/unit/losses/test_alignment_mcc_mdd_jan.py",),
    ),
    Mutation(
        "DKD's warm-up in epochs, not a fraction of the run",
        "losses/distillation/dkd.py",
        "weight = min((inputs.epoch + 1) / (self.warmup * max(inputs.epochs, 1)), 1.0)",
        "weight = min((inputs.epoch + 1) / 20, 1.0)",
        DISTILLATION,
    ),
    Mutation(
        "LoRA's update not scaled by α/r",
        "peft/lora.py",
        "r=self.rank, lora_alpha=self.alpha,",
        "r=self.rank, lora_alpha=self.rank,",
        ("tests/unit/peft/test_peft.py",),
    ),
    Mutation(
        "an adapter's up-projection not zero at the start",
        "peft/adapter.py",
        "        nn.init.zeros_(self.up.weight)\n",
        "",
        ("tests/unit/peft/test_peft.py",),
    ),
    Mutation(
        "WiSE-FT's mixing coefficient the wrong way round",
        "nets/reference.py",
        "torch.lerp(start_state[k], v, alpha)",
        "torch.lerp(v, start_state[k], alpha)",
        ("tests/integration/train/test_lpft_wise.py",),
    ),
    Mutation(
        "LogME's evidence with min(N, D) terms (thuml/LogME before its PR #24)",
        "transferability/logme.py",
        "+ (d - sigma.size) * np.log(alpha)",
        "+ 0.0",
        ("tests/unit/transferability/test_scores.py",),
    ),
    Mutation(
        "H-score without shrinkage",
        "transferability/hscore.py",
        "    if not shrinkage:\n",
        "    if True:\n",
        ("tests/unit/transferability/test_scores.py",),
    ),
    Mutation(
        "TransRate's classes weighted 1/K",
        "transferability/transrate.py",
        'weights = {k: (y == k).mean() if class_weights == "frequency" else 1.0 / len(classes) '
        "for k in classes}",
        "weights = {k: 1.0 / len(classes) for k in classes}",
        ("tests/unit/transferability/test_scores.py",),
    ),
    Mutation(
        "the random resized crop's aspect ratio drawn uniformly, not log-uniformly",
        "data/device.py",
        "torch.exp(torch.empty(n, attempts, device=device).uniform_(log_lo, log_hi, generator=generator))",
        "torch.empty(n, attempts, device=device).uniform_(ratio[0], ratio[1], generator=generator)",
        ("tests/unit/data/test_benchmarks.py",),
    ),
    Mutation(
        "the A-distance from the error without the 2(1 - 2e) scale",
        "analysis/feature_space.py",
        "return 2.0 * (1.0 - 2.0 * error)",
        "return 1.0 - error",
        ("tests/integration/train/test_feature_space.py",),
    ),
    Mutation(
        "the benchmarks' backbone at the full learning rate",
        "methods/adaptation/base.py",
        '"backbone", self.net.backbone.named_parameters(), lr_scale=self.backbone_lr_mult',
        '"backbone", self.net.backbone.named_parameters(), lr_scale=1.0',
        (
            "tests/integration/train/test_benchmark_protocol.py::test_the_office31_protocol_is_the_reference_library_s",
        ),
    ),
)


def run_tests(tests: tuple[str, ...], source: Path) -> bool:
    """Whether ``tests`` pass against the package copy under ``source``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "ignore",
    }
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return result.returncode == 0


def check(mutation: Mutation, source: Path) -> tuple[bool, float]:
    """(caught, seconds): apply ``mutation`` to the copy under ``source``, run its tests, restore."""
    path = source / "transferlab" / mutation.path
    original = path.read_text()
    found = original.count(mutation.old)
    if found != 1:
        raise SystemExit(f"error: {mutation.name}: its text occurs {found} times in {mutation.path}")
    path.write_text(original.replace(mutation.old, mutation.new))
    start = time.perf_counter()
    try:
        caught = not run_tests(mutation.tests, source)
    finally:
        path.write_text(original)
    return caught, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="run the mutations whose name contains this")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only.lower() in m.name.lower()]
    survived = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        (Path(tmp) / "conf").symlink_to(ROOT / "conf")  # where the copy's entry points look for configs
        # a test that fails (or does not run) on the unchanged code would "catch" every mutation
        for tests in dict.fromkeys(m.tests for m in chosen):
            if not run_tests(tests, source):
                print(f"error: {' '.join(tests)} fail on the unchanged code", file=sys.stderr)
                return 1
        print("| mutation | caught | seconds |\n|---|---|---|")
        for mutation in chosen:
            caught, seconds = check(mutation, source)
            print(f"| {mutation.name} | {'yes' if caught else '**no**'} | {seconds:.1f} |", flush=True)
            if not caught:
                survived.append(mutation.name)
    print(f"\n{len(chosen) - len(survived)} of {len(chosen)} caught")
    if survived:
        print(f"error: the tests let through: {'; '.join(survived)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
