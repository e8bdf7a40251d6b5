"""The machine description and git revision stored with every run."""

from __future__ import annotations

import subprocess

from vectors.loadtest.machine import cpu_model, describe, git_revision, mem_total_gib

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu\n"


def test_cpu_model_is_read_from_proc_cpuinfo():
    assert cpu_model(CPUINFO) == "AMD EPYC 7B13 64-Core Processor"
    assert cpu_model("processor : 0\n") == ""


def test_memory_is_read_from_proc_meminfo_in_gib():
    assert mem_total_gib("MemTotal:       24576000 kB\nMemFree: 1 kB\n") == 23.4
    assert mem_total_gib("") is None


def test_the_description_names_cpu_cores_memory_and_torch():
    machine = describe(torch_threads=3)
    assert machine["cores"] >= 1 and machine["usable_cores"] >= 1
    assert machine["torch"] and machine["torch_threads"] == 3
    assert machine["cpu"]


def test_git_revision_is_the_head_commit_in_a_checkout(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_revision(tmp_path) == head
    (tmp_path / "f").write_text("changed")
    assert git_revision(tmp_path) == f"{head}-dirty"


def test_git_revision_is_empty_outside_a_checkout(tmp_path):
    assert git_revision(tmp_path) == ""
