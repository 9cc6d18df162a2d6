"""Whether a state dict fits a module: what a refusal to load lists."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str:
    """The tensors of ``state`` that do not fit ``expected`` (missing, unexpected, other shape),
    as ``"N mismatches: a; b; c; d; and M more"``; an empty string when it fits."""
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not problems:
        return ""
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    return f"{len(problems)} mismatches: {shown}"
