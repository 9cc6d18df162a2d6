"""The callbacks a method hands its trainer, behind one entry of ``trainer.callbacks``.

Lightning dispatches every hook to every callback it holds, overridden or not — about eight
Python calls per callback and hook, a dozen hooks a training step. The handed callbacks (the
non-finite watch, the confusion report, the resume plan, a family's own) need a few hooks each,
most of them once per run; ``Handed`` takes each hook from Lightning once and forwards it only to
the members that define it, so handing a method more engineering costs the step almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lightning.pytorch import Callback

#: the hooks forwarded: Lightning's callback hooks (``on_*``, ``setup``, ``teardown``)
HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown"))


class Handed(Callback):
    """``members``, each a ``Callback``, as one callback: a hook reaches the members that
    override it, in their order."""

    def __init__(self, members: Iterable[Callback]) -> None:
        self.members = list(members)
        self.forwarded: dict[str, list[Callable[..., Any]]] = {
            name: [
                getattr(m, name)
                for m in self.members
                if getattr(type(m), name) is not getattr(Callback, name)
            ]
            for name in HOOKS
        }

    @property
    def state_key(self) -> str:
        return f"Handed[{','.join(type(m).__qualname__ for m in self.members)}]"


def _forwarder(name: str) -> Callable[..., None]:
    def hook(self: Handed, *args: Any, **kwargs: Any) -> None:
        for fn in self.forwarded[name]:
            fn(*args, **kwargs)

    hook.__name__ = name
    return hook


for _name in HOOKS:
    setattr(Handed, _name, _forwarder(_name))
