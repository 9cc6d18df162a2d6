"""What a run records about itself, and what the next run receives: the typed run contract.

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
    the method's ``_target_`` and a one-line label of the run (task and overrides)."""

    net: dict[str, Any]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint or a manifest (the keys they have always had)."""
        return {
            "net": self.net,
            "data": self.data,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "method": self.method,
            "run": self.label,
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
        )

    @classmethod
    def of_checkpoint(cls, checkpoint: dict[str, Any], where: str) -> RunContract:
        return cls.from_dict(checkpoint.get(CHECKPOINT_KEY), f"checkpoint {where}")
