"""How close one set of embeddings is to a reference: cosine per row and nearest-neighbour agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.batches import unit_rows


@dataclass(frozen=True)
class Agreement:
    """Candidate vs reference on the same texts.

    mean_cosine / worst_cosine: cosine similarity of each text's two vectors, averaged and at its lowest.
    top_k_agreement: for each text, the share of its k nearest neighbours (by cosine, within the corpus)
        that the candidate finds too, averaged - what a search index built on the candidate would feel.
    """

    texts: int
    mean_cosine: float
    worst_cosine: float
    top_k_agreement: float
    k: int = 5


def neighbours(rows: np.ndarray, k: int) -> np.ndarray:
    """Return each row's k nearest other rows by cosine, as indices."""
    unit = unit_rows(rows, np.float64)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def compare(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> Agreement:
    """Return how closely `candidate` rows follow `reference` rows (same texts, same order)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    cosines = (unit_rows(reference, np.float64) * unit_rows(candidate, np.float64)).sum(axis=1)
    ref_nn, cand_nn = neighbours(reference, k), neighbours(candidate, k)
    shared = [len(set(a) & set(b)) / k for a, b in zip(ref_nn, cand_nn, strict=True)]
    return Agreement(len(reference), float(cosines.mean()), float(cosines.min()), float(np.mean(shared)), k)
