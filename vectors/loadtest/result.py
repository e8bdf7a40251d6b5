"""The outcome of one `manage.py benchmark`: its load runs, the model's limit, the machine and revision."""

from __future__ import annotations

from dataclasses import dataclass, field

from .limit import LimitResult
from .load import LoadResult
from .options import BenchmarkOptions


@dataclass
class BenchmarkReport:
    """Everything printed, written to --json and stored as BenchmarkRun rows."""

    options: BenchmarkOptions
    target: str
    started_server: bool
    runs: list[LoadResult]
    limit: LimitResult | None = None
    machine: dict = field(default_factory=dict)
    git_revision: str = ""
    model: str = ""
    notes: list[str] = field(default_factory=list)
    stored_ids: list[int] = field(default_factory=list)

    def ratio(self, run: LoadResult) -> float | None:
        """Return served texts/s over the model's offline limit, when the limit was measured."""
        if self.limit is None or not self.limit.texts_per_s:
            return None
        return run.summary.texts_per_s / self.limit.texts_per_s

    def to_dict(self) -> dict:
        return {
            "parameters": self.options.to_dict(),
            "target": self.target,
            "started_server": self.started_server,
            "model": self.model,
            "runs": [{**run.to_dict(), "served_over_limit": self.ratio(run)} for run in self.runs],
            "limit": self.limit.to_dict() if self.limit else None,
            "machine": self.machine,
            "git_revision": self.git_revision,
            "notes": self.notes,
            "stored_ids": self.stored_ids,
        }
