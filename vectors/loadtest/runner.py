"""A whole benchmark: find or start the target, measure the limit, run the load(s), keep and write the results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx
import orjson

from . import endpoints, limit, machine, store
from .client import quiet_http_logs
from .corpus import default_corpus, read_corpus
from .load import LoadPlan, LoadResult, run_load
from .options import BenchmarkOptions
from .result import BenchmarkReport
from .server import TargetError, local_server, wait_ready

SETTLE_S = 1.0  # pause between the designs of --compare so one's stragglers do not load the next


@dataclass(frozen=True)
class Design:
    """One arm of --compare."""

    key: str
    endpoint: str
    label: str


COMPARE_DESIGNS = (
    Design("sync", "bench-sync", "(a) sync view: model.encode per request"),
    Design("async", "bench-async", "(b) async view: await sync_to_async(encode)"),
    Design("batched", "get_vector", "(c) micro-batched /get_vector"),
)


@contextmanager
def target(opts: BenchmarkOptions, manage_py: Path, bench_views: bool) -> Iterator[tuple[str, bool]]:
    """Yield (base URL, started here): the given server once ready, or one started for the block."""
    if opts.url:
        wait_ready(opts.url, timeout_s=5)
        yield opts.url, False
        return
    env = {"EMBED_BENCH_VIEWS": "1"} if bench_views else {}
    with local_server(manage_py, env) as server:
        yield server.url, True


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers that carry `--api-key` (none without one)."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def check_access(base_url: str, api_key: str | None) -> None:
    """Raise TargetError when the server refuses the key (or its absence): every request would be a 401."""
    with httpx.Client(base_url=base_url, timeout=60, trust_env=False, headers=auth_headers(api_key)) as client:
        response = client.get("/v1/models")
    if response.status_code != 401:
        return
    try:
        why = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        why = response.text[:200]
    if api_key:
        raise TargetError(f"{base_url} refuses the key given with --api-key: {why}")
    raise TargetError(f"{base_url} requires an API key ({why}): pass one with --api-key")


def check_bench_views(base_url: str, api_key: str | None = None) -> None:
    """Raise TargetError unless the server answers the bench-only baseline views."""
    with httpx.Client(base_url=base_url, timeout=60, trust_env=False, headers=auth_headers(api_key)) as client:
        for path in ("/bench/get_vector_sync", "/bench/get_vector_async"):
            response = client.get(path, params={"sentence": "is the baseline view there?"})
            if response.status_code == 404:
                raise TargetError(
                    f"{base_url}{path} answers 404: start that server with EMBED_BENCH_VIEWS=1 "
                    "(or leave out --url and the benchmark starts one)"
                )
            if response.status_code != 200:
                raise TargetError(f"{base_url}{path} answers {response.status_code}: {response.text[:200]}")


def plan_for(opts: BenchmarkOptions, endpoint: str) -> LoadPlan:
    return LoadPlan(
        endpoint=endpoint,
        concurrency=opts.concurrency,
        rate=opts.rate,
        duration_s=opts.duration_s,
        requests=opts.requests,
        warmup_s=opts.warmup_s,
        inputs_per_request=opts.inputs_per_request,
        timeout_s=opts.timeout_s,
        connections=opts.connections,
    )


def run_benchmark(
    opts: BenchmarkOptions, manage_py: Path, progress: TextIO | None = None, log: TextIO | None = None
) -> BenchmarkReport:
    """Run the benchmark `opts` describes (already validated) and return its report, stored and written.

    Raises:
        TargetError: the target refused, was not ready, or would not start.
        LimitError: --limit was asked and the limit could not be measured.
    """
    from .. import conf

    def say(message: str) -> None:
        if log is not None:
            log.write(message + "\n")
            log.flush()

    quiet_http_logs()
    texts = read_corpus(opts.corpus) if opts.corpus else default_corpus()
    designs = (
        COMPARE_DESIGNS
        if opts.compare
        else (Design(opts.endpoint or "", opts.endpoint or "", endpoints.get(opts.endpoint or "").description),)
    )
    bench_views = any(endpoints.get(d.endpoint).needs_bench_views for d in designs)
    model_config = conf.model_configs()[0]
    if not opts.url:
        say("starting the server (manage.py serve --port 0) ...")
    with target(opts, manage_py, bench_views) as (base_url, started):
        say(f"target ready: {base_url}")
        check_access(base_url, opts.api_key)
        if bench_views:
            check_bench_views(base_url, opts.api_key)
        measured_limit = None
        if opts.limit:
            say(f"measuring the model's offline limit (batch sizes {', '.join(map(str, opts.limit_batch_sizes))}) ...")
            measured_limit = limit.run_child(model_config, texts, opts.limit_batch_sizes, opts.limit_seconds)
        runs: list[LoadResult] = []
        for index, design in enumerate(designs):
            if index:
                time.sleep(SETTLE_S)
            say(f"loading {design.endpoint} ...")
            label = design.label if opts.compare else ""
            plan = plan_for(opts, design.endpoint)
            headers = auth_headers(opts.api_key)
            runs.append(asyncio.run(run_load(base_url, plan, texts, label, progress, headers=headers)))
    report = BenchmarkReport(
        options=opts,
        target=base_url,
        started_server=started,
        runs=runs,
        limit=measured_limit,
        machine=machine.describe(measured_limit.torch_threads if measured_limit else None),
        git_revision=machine.git_revision(manage_py.parent),
        model=model_config.name,
    )
    if opts.url and opts.limit:
        report.notes.append("the limit was measured on this machine with this checkout's model settings")
    finish(report)
    return report


def finish(report: BenchmarkReport) -> None:
    """Store the rows and write --json / --plot; a storage failure becomes a note, not a lost run."""
    opts = report.options
    if opts.store:
        try:
            report.stored_ids = store.save(report)
        except store.StoreError as exc:
            report.notes.append(str(exc))
    if opts.plot_path is not None:
        from .plot import write_plot

        write_plot(report, opts.plot_path)
    if opts.json_path is not None:
        opts.json_path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
