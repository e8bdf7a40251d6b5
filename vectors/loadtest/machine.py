"""Where a run happened: CPU, cores, memory, torch, and the git revision of the code."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..engine.support import cpuinfo_values


def cpu_model(cpuinfo: str) -> str:
    """Return the first "model name" of a /proc/cpuinfo text, or "" when there is none."""
    return next((value for value in cpuinfo_values(cpuinfo, "model name", "Model", "cpu model") if value), "")


def mem_total_gib(meminfo: str) -> float | None:
    """Return MemTotal of a /proc/meminfo text in GiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all the machine's where there is none); 0: unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def ram_gib() -> float | None:
    """This machine's memory in GiB (MemTotal); None: cannot tell."""
    return mem_total_gib(_read("/proc/meminfo"))


def describe(torch_threads: int | None = None) -> dict:
    """Return the machine as a dict: cpu, cores, RAM, OS, Python and torch (version, threads)."""
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = ""
    if torch_threads is None and torch_version:
        import torch

        torch_threads = torch.get_num_threads()
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")) or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "ram_gib": ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "torch_threads": torch_threads,
    }


def git_revision(root: Path) -> str:
    """Return `git rev-parse HEAD` (with "-dirty" when files changed), or "" outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and changed else head
