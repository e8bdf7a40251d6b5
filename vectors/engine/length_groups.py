"""A batch runs as model calls over groups of similar token length, so that little of each call is padding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# A model call's fixed cost in padded tokens, for length_groups (measured: bench/README-backends.md).
CALL_COST = 16


def length_groups(lengths: np.ndarray, call_cost: int) -> list[np.ndarray]:
    """Split a batch's rows into groups of similar token length, each to be one model call.

    A call pads every row to its longest, so a batch of short and long texts spends much of its work
    on padding (single sentences of the default corpus, 50 to a batch: 30 % of the tokens). Each group
    costs `call_cost` (a call's fixed cost, in padded tokens) plus its rows x its longest; the split
    with the least total is found exactly, by dynamic programming over the sorted lengths (cut only
    where the length changes). Returns index arrays into `lengths`, shortest texts first.
    """
    order = np.argsort(lengths, kind="stable")
    ranked = np.asarray(lengths)[order]
    cuts = [0] + [i for i in range(1, len(ranked)) if ranked[i] != ranked[i - 1]] + [len(ranked)]
    best = [0] * len(cuts)  # best[j]: least cost of the rows before cuts[j]
    start = [0] * len(cuts)
    for j in range(1, len(cuts)):
        end, width = cuts[j], int(ranked[cuts[j] - 1])
        best[j], start[j] = min((best[i] + call_cost + (end - cuts[i]) * width, i) for i in range(j))
    groups = []
    j = len(cuts) - 1
    while j > 0:
        groups.append(order[cuts[start[j]] : cuts[j]])
        j = start[j]
    return groups[::-1]


def grouped(
    lengths: np.ndarray | None, call_cost: int, size: int, run: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """Run `run(rows, width)` once per length group (`length_groups`) and put the results in input order.

    `run` gets the indices of one group's rows and the group's longest length, and returns its rows.
    Without lengths (a tokenizer that gives no attention mask), the batch runs as one call.
    """
    if lengths is None or size < 2:
        return run(np.arange(size), 0)
    groups = length_groups(lengths, call_cost)
    if len(groups) == 1:
        return run(np.arange(size), int(np.max(lengths)))
    out: np.ndarray | None = None
    for group in groups:
        part = run(group, int(lengths[group].max()))
        if out is None:
            out = np.empty((size, *part.shape[1:]), dtype=part.dtype)
        out[group] = part
    assert out is not None
    return out


def padded_columns(tokenizer: object, full: int) -> Callable[[int], slice]:
    """The columns of a padded batch that hold a group's tokens, for a group `width` long."""
    if getattr(tokenizer, "padding_side", "right") == "left":
        return lambda width: slice(full - width, full)
    return lambda width: slice(0, width)
