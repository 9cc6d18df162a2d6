"""What a training step costs the host, counted (not timed), step by step.

Three counters, each a context that can be entered and left from a Lightning callback:

- ``HostTraffic`` (a ``TorchFunctionMode``): **host→device copies** and **host reads**. A CPU run
  has no device to copy to, so the counter tracks where each tensor would live on a GPU. A
  tensor is *host-born* when the step creates it without naming a device (``torch.rand(n)``,
  ``torch.tensor([...])``, a DataLoader's collated batch) or computes it from host-born tensors
  only; everything made before the count starts (weights, the resident data) and everything
  created with ``device=`` lives on the device. A *copy* is ``.to(device)``, ``.cuda()`` or
  ``copy_`` of a host-born tensor onto the device, or a host-born tensor used in an op with
  device tensors (an implicit copy of a 0-dim CPU tensor). A *read* is ``item()``, ``bool()``,
  ``float()``, ``int()``, ``tolist()``, ``numpy()``, ``cpu()``, ``.to("cpu")`` or formatting of a
  device tensor: on a GPU each of these waits for the queue to drain.
- ``OpCounter`` (a ``TorchDispatchMode``): aten operators dispatched, forward and backward.
- ``PythonCalls`` (``sys.setprofile``): Python and C function calls made by Python code.

Limits: ``torch.from_numpy`` cannot be intercepted, so a tensor made from a NumPy array inside
the step is not known to be host-born; an optimiser that keeps its step count on the CPU (Adam
without ``capturable``) has its ``item()`` counted as a read, where on a GPU it is none.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

_FACTORIES = {
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.arange,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.empty,
    torch.linspace,
    torch.eye,
    torch.tensor,
    torch.as_tensor,
    torch.scalar_tensor,
}
_READS = {  # ``cpu()`` and ``numpy()`` say "to the host" even where the device is the CPU
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
    torch.Tensor.__format__,
    torch.Tensor.__repr__,
}
_MOVES = {torch.Tensor.to, torch.Tensor.cuda}


def _target_device(func: Any, args: tuple, kwargs: dict) -> torch.device | None:
    """The device a ``.to``/``.cuda`` call moves to (None: a dtype change only)."""
    if func is torch.Tensor.cuda:
        return torch.device("cuda")
    if "device" in kwargs and kwargs["device"] is not None:
        return torch.device(kwargs["device"])
    for arg in args[1:]:
        if isinstance(arg, torch.Tensor):
            return arg.device
        if isinstance(arg, (str, torch.device)):
            return torch.device(arg)
    return None


class HostTraffic(TorchFunctionMode):
    """Counts host→device copies (``copies``) and host reads (``reads``) while entered, for a
    step that trains on ``device`` (on a CPU run, moving a tensor to the CPU is moving it to the
    device: a copy when the tensor is host-born, nothing otherwise)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.copies = 0
        self.reads = 0
        self.where: Counter[str] = Counter()  # what was counted, by operator name
        self._host = WeakIdKeyDictionary()

    def _is_host(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value in self._host

    def _mark(self, result: Any) -> None:
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor):
                self._host[value] = True

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        result = func(*args, **kwargs)
        if func in _READS:
            if args and isinstance(args[0], torch.Tensor) and not self._is_host(args[0]):
                self.reads += 1
                self.where[f"read:{name}"] += 1
            return result
        if func in _FACTORIES:
            data = args[0] if args else None
            from_device = isinstance(data, torch.Tensor) and not self._is_host(data)
            if kwargs.get("device") is None and not from_device:
                self._mark(result)
            return result
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if func in _MOVES:
            target = _target_device(func, args, kwargs)
            source = args[0]
            if target is None:  # a dtype change: stays where it was
                if self._is_host(source):
                    self._mark(result)
            elif target.type == self.device.type:
                if self._is_host(source):
                    self.copies += 1
                    self.where[f"copy:{name}"] += 1
                    # on a CPU run the moved tensor can be the source object itself: from now on
                    # it stands for the device copy
                    self._host.pop(result, None)
            else:  # to the host
                if not self._is_host(source):
                    self.reads += 1
                    self.where[f"read:{name}"] += 1
                self._mark(result)
            return result
        if func is torch.Tensor.copy_ and len(args) > 1:
            if self._is_host(args[1]) and not self._is_host(args[0]):  # into a device tensor
                self.copies += 1
                self.where["copy:copy_"] += 1
            return result
        host = [t for t in tensors if self._is_host(t)]
        if host and len(host) == len(tensors):
            self._mark(result)
        elif host:  # host-born tensors mixed into a device op: implicit copies
            self.copies += len(host)
            self.where[f"copy:implicit:{name}"] += len(host)
        return result


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while entered (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


class PythonCalls:
    """Counts Python function calls and C calls from Python while entered (``sys.setprofile``)."""

    def __init__(self) -> None:
        self.calls = 0

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1

    def __enter__(self) -> PythonCalls:
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(self._previous)


def snapshot(counters: dict[str, Any]) -> dict[str, int]:
    """The current totals of ``counters`` (``HostTraffic``, ``OpCounter``, ``PythonCalls``)."""
    values: dict[str, int] = {}
    for counter in counters.values():
        if isinstance(counter, HostTraffic):
            values |= {"copies": counter.copies, "reads": counter.reads}
        elif isinstance(counter, OpCounter):
            values["ops"] = counter.ops
        elif isinstance(counter, PythonCalls):
            values["python_calls"] = counter.calls
    return values


class StepLedger:
    """Per-step differences of the counters' totals: ``open(logs)`` at the start of a step
    (whether it writes logs), ``close()`` at its end; ``steps`` holds one dict per closed step."""

    def __init__(self, counters: dict[str, Any]) -> None:
        self.counters = counters
        self.steps: list[dict[str, Any]] = []
        self._start: dict[str, int] | None = None
        self._logs = False

    def open(self, logs: bool) -> None:
        self.close()
        self._start, self._logs = snapshot(self.counters), logs

    def close(self) -> None:
        if self._start is None:
            return
        now = snapshot(self.counters)
        self.steps.append({"logs": self._logs, **{k: now[k] - self._start[k] for k in now}})
        self._start = None

    def summary(self, skip: int = 1) -> dict[str, dict[str, float]]:
        """Median and maximum of each count over the logging and the non-logging steps, after the
        first ``skip`` steps (the first step allocates optimiser state and caches)."""
        out: dict[str, dict[str, float]] = {}
        for kind, logs in (("non_logging", False), ("logging", True)):
            steps = [s for s in self.steps[skip:] if s["logs"] == logs]
            if not steps:
                continue
            out[kind] = {"steps": len(steps)}
            for key in (k for k in steps[0] if k != "logs"):
                values = sorted(s[key] for s in steps)
                out[kind][f"{key}_median"] = values[len(values) // 2]
                out[kind][f"{key}_max"] = values[-1]
        return out
