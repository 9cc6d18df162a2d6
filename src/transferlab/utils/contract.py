"""What a run records about itself, and what the next run receives: the typed run contract, and
the one check every checkpoint handed to a run passes before any work (``check_handed``).

Every checkpoint a run writes carries its ``RunContract`` (under the key ``transferlab``), and so
does the ``manifest.json`` beside the checkpoint another run loads. A fine-tuning target, a
student or ``transferlab.eval`` reads it back with ``RunContract.from_dict``: the net it must
rebuild, the classes in label order, the data it was trained on. A checkpoint another run hands
on (a source, a teacher) is opened once into a ``HandedCheckpoint`` (``utils/checkpoint.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transferlab.utils.errors import CheckpointError

CHECKPOINT_KEY = "transferlab"  # where a Lightning checkpoint holds the contract


@dataclass(frozen=True)
class RunContract:
    """The run's net config (with ``_target_``), its data config, its classes in label order,
    the method's ``_target_``, a one-line label of the run (task and overrides) and what its net
    is fed (``inputs``: image_size, channels, mean, std; empty in checkpoints written before
    it was recorded)."""

    net: dict[str, Any]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    label: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint or a manifest (the keys they have always had)."""
        return {
            "net": self.net,
            "data": self.data,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "method": self.method,
            "run": self.label,
            "inputs": self.inputs,
        }

    @classmethod
    def from_dict(cls, record: Any, where: str) -> RunContract:
        """Read a contract back; refuse, in one line naming ``where``, one that lacks the net or
        the class count (a checkpoint not written by ``transferlab.train``)."""
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("net"), dict)
            or "num_classes" not in record
        ):
            raise CheckpointError(
                f"{where} has no transferlab run contract (net config, classes); only checkpoints "
                f"written by transferlab.train can be loaded by config"
            )
        return cls(
            net=dict(record["net"]),
            num_classes=int(record["num_classes"]),
            class_names=[str(name) for name in record.get("class_names") or []],
            data=dict(record.get("data") or {}),
            method=str(record.get("method") or ""),
            label=str(record.get("run") or ""),
            inputs=dict(record.get("inputs") or {}),
        )

    @classmethod
    def of_checkpoint(cls, checkpoint: dict[str, Any], where: str) -> RunContract:
        return cls.from_dict(checkpoint.get(CHECKPOINT_KEY), f"checkpoint {where}")


# What each route a checkpoint takes into a run must agree on with the run. A source starts a
# new task (its classes differ by design, its head is dropped); a ranked candidate only extracts
# features; every other route predicts this run's classes with the checkpoint's own head.
ROUTE_CHECKS: dict[str, tuple[str, ...]] = {
    "source": ("inputs",),
    "teacher": ("classes", "inputs"),
    "resume": ("method", "net", "classes", "inputs"),
    "eval": ("classes", "inputs"),
    "rank": ("inputs",),
}


def check_handed(handed: RunContract, run: RunContract, route: str, where: str) -> None:
    """Refuse, in one line that names ``where`` (the key and path the user typed), a checkpoint
    whose contract ``handed`` disagrees with this ``run``'s on what ``route`` needs
    (``ROUTE_CHECKS``): the method and net a resume continues, the classes by name and in label
    order, the images' side, channels and normalisation. A record missing on either side (a
    checkpoint from before it was kept) is not compared."""
    for check in ROUTE_CHECKS[route]:
        problem = _DISAGREEMENTS[check](handed, run)
        if problem:
            raise CheckpointError(f"{where}: {problem}")


def _method(handed: RunContract, run: RunContract) -> str:
    if not handed.method or handed.method == run.method:
        return ""
    return (
        f"it is a checkpoint of {handed.method} and this run trains {run.method}; resume with the "
        f"method it was trained with, or start {run.method} from it as a source (method.source_ckpt)"
    )


def _net(handed: RunContract, run: RunContract) -> str:
    differing = sorted(k for k in set(handed.net) | set(run.net) if handed.net.get(k) != run.net.get(k))
    if not differing:
        return ""
    pairs = ", ".join(
        f"net.{k}: {handed.net.get(k)} (checkpoint) vs {run.net.get(k)} (run)" for k in differing
    )
    return f"its net differs from this run's ({pairs}); resume with the net it was trained with"


def _classes(handed: RunContract, run: RunContract) -> str:
    if handed.num_classes != run.num_classes:
        return (
            f"it predicts {handed.num_classes} classes and this run's data has {run.num_classes}; "
            f"pick data (and data.classes) with the checkpoint's classes"
        )
    if not handed.class_names or not run.class_names or handed.class_names == run.class_names:
        return ""
    return (
        f"it was trained on classes {handed.class_names} and this run's data has "
        f"{run.class_names}; pick data (and data.classes) with the checkpoint's classes in its order"
    )


def _inputs(handed: RunContract, run: RunContract) -> str:
    theirs, ours = handed.inputs or _written_inputs(handed.data), run.inputs
    if not theirs or not ours:
        return ""
    theirs = {**ours, **theirs}  # what a checkpoint did not record is not compared
    fixes = []
    if theirs.get("image_size") != ours.get("image_size"):
        fixes.append(f"data.image_size={theirs.get('image_size')} (this run: {ours.get('image_size')})")
    if theirs.get("channels") != ours.get("channels"):
        fixes.append(f"{theirs.get('channels')}-channel images (this run: {ours.get('channels')})")
    for key in ("mean", "std"):
        if not _close(theirs.get(key), ours.get(key), key):
            fixes.append(f"data.{key}={_listed(theirs.get(key))} (this run: {_listed(ours.get(key))})")
    if not fixes:
        return ""
    return f"its net was fed other images than this run's; feed it as it was trained: {', '.join(fixes)}"


def _written_inputs(data: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint from before ``inputs`` was recorded says of them: the image side and
    a normalisation its data config spells out."""
    written = {key: data[key] for key in ("image_size", "mean", "std") if data.get(key) is not None}
    if isinstance(data.get("source"), dict):  # a domain pair: the source domain's normalisation
        written |= {k: v for k, v in _written_inputs(data["source"]).items() if k != "image_size"}
    return written


def _close(a: Any, b: Any, key: str) -> bool:
    """Whether two normalisations are the same scheme: means within 0.05, stds within 10%.
    Statistics computed from another sample of the same kind of images (another class subset,
    CIFAR-100 beside CIFAR-10) differ by less; another scheme ([0.5]·3 / [0.5]·3, MNIST's
    0.1307 / 0.3081 against CIFAR's) by more."""
    if a is None or b is None:
        return a is b
    if len(a) != len(b):
        return False
    if key == "mean":
        return all(abs(float(x) - float(y)) <= 0.05 for x, y in zip(a, b, strict=True))
    return all(
        abs(float(x) - float(y)) <= 0.1 * max(abs(float(x)), abs(float(y))) for x, y in zip(a, b, strict=True)
    )


def _listed(values: Any) -> str:
    return "[" + ",".join(f"{float(v):g}" for v in values) + "]" if values is not None else "null"


_DISAGREEMENTS = {"method": _method, "net": _net, "classes": _classes, "inputs": _inputs}
