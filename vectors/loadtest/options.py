"""What a benchmark run was asked to do, checked as a whole before anything starts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import endpoints
from .limit import DEFAULT_BATCH_SIZES
from .server import url_problem

DEFAULT_CONCURRENCY = 64
DEFAULT_DURATION_S = 20.0
DEFAULT_WARMUP_S = 3.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_OPEN_CONNECTIONS = 1000
DEFAULT_ENDPOINT = "openai-float"
COMPARE_ENDPOINT = "get_vector"


class InvalidOptions(ValueError):
    """The options contradict each other or are out of range; the message says which and why."""


@dataclass(frozen=True)
class BenchmarkOptions:
    """Options of `manage.py benchmark`; None means "not given" until `validate` fills defaults in."""

    url: str | None = None
    allow_remote: bool = False
    endpoint: str | None = None
    concurrency: int | None = None
    rate: float | None = None
    duration_s: float | None = None
    requests: int | None = None
    warmup_s: float = DEFAULT_WARMUP_S
    inputs_per_request: int = 1
    corpus: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    connections: int | None = None
    limit: bool = False
    limit_batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    limit_seconds: float = 3.0
    compare: bool = False
    json_path: Path | None = None
    plot_path: Path | None = None
    progress: bool | None = None  # None: when stderr is a terminal
    label: str = ""
    store: bool = True
    api_key: str | None = field(default=None, repr=False)  # sent as a Bearer token; never stored or printed

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["api_key"] = "(given)" if self.api_key else None
        for key in ("corpus", "json_path", "plot_path"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["limit_batch_sizes"] = list(self.limit_batch_sizes)
        data["mode"] = self.mode
        return data


def parse_batch_sizes(raw: str) -> tuple[int, ...]:
    """Parse "16,32,64" into (16, 32, 64).

    Raises:
        InvalidOptions: not a comma-separated list of positive integers.
    """
    try:
        sizes = tuple(int(item) for item in raw.split(",") if item.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise InvalidOptions(f"--limit-batch-sizes {raw!r}: expected positive integers separated by commas, e.g. 16,64")
    return sizes


def validate(opts: BenchmarkOptions) -> BenchmarkOptions:
    """Return the options with defaults filled in.

    Raises:
        InvalidOptions: the first problem found, in words a user can act on.
    """
    if opts.concurrency is not None and opts.rate is not None:
        raise InvalidOptions("choose --concurrency N (closed loop) or --rate R (open loop), not both")
    if opts.concurrency is not None and opts.concurrency < 1:
        raise InvalidOptions(f"--concurrency must be at least 1 (got {opts.concurrency})")
    if opts.rate is not None and not 0 < opts.rate < math.inf:
        raise InvalidOptions(f"--rate must be more than 0 requests/s, and finite (got {opts.rate})")
    if opts.connections is not None and opts.rate is None:
        raise InvalidOptions("--connections only applies to --rate (a closed loop opens one per client)")
    if opts.connections is not None and opts.connections < 1:
        raise InvalidOptions(f"--connections must be at least 1 (got {opts.connections})")
    if opts.duration_s is not None and opts.requests is not None:
        raise InvalidOptions("choose --duration or --requests, not both")
    if opts.duration_s is not None and not 0 < opts.duration_s < math.inf:
        raise InvalidOptions(f"--duration must be more than 0 seconds, and finite (got {opts.duration_s})")
    if opts.requests is not None and opts.requests < 1:
        raise InvalidOptions(f"--requests must be at least 1 (got {opts.requests})")
    if not 0 <= opts.warmup_s < math.inf:
        raise InvalidOptions(f"--warmup cannot be negative, and must be finite (got {opts.warmup_s})")
    if not 0 < opts.timeout_s < math.inf:
        raise InvalidOptions(f"--timeout must be more than 0 seconds, and finite (got {opts.timeout_s})")
    if opts.inputs_per_request < 1:
        raise InvalidOptions(f"--inputs-per-request must be at least 1 (got {opts.inputs_per_request})")
    if not 0 < opts.limit_seconds < math.inf:
        raise InvalidOptions(f"--limit-seconds must be more than 0, and finite (got {opts.limit_seconds})")
    if opts.compare:
        if opts.endpoint is not None:
            raise InvalidOptions("--compare always loads GET /get_vector and its two baselines; leave out --endpoint")
        if opts.inputs_per_request != 1:
            raise InvalidOptions(
                "--compare sends one sentence per request, as the write-up did; leave out --inputs-per-request"
            )
    endpoint = opts.endpoint or (COMPARE_ENDPOINT if opts.compare else DEFAULT_ENDPOINT)
    if endpoint not in endpoints.ENDPOINTS:
        raise InvalidOptions(f"--endpoint {endpoint!r}: choose one of {', '.join(endpoints.ENDPOINTS)}")
    most = endpoints.get(endpoint).max_inputs
    if most is not None and opts.inputs_per_request > most:
        raise InvalidOptions(
            f"--endpoint {endpoint} takes {most} text per request; --inputs-per-request {opts.inputs_per_request} "
            "needs openai-float, openai-base64 or tei"
        )
    if opts.url is not None:
        problem = url_problem(opts.url, opts.allow_remote)
        if problem:
            raise InvalidOptions(problem)
    if opts.corpus is not None and not opts.corpus.is_file():
        raise InvalidOptions(f"--corpus {opts.corpus}: no such file")
    for flag, path in (("--json", opts.json_path), ("--plot", opts.plot_path)):
        if path is not None and not path.parent.resolve().is_dir():
            raise InvalidOptions(f"{flag} {path}: directory {path.parent} does not exist")
    if opts.plot_path is not None and opts.plot_path.suffix.lower() != ".png":
        raise InvalidOptions(f"--plot {opts.plot_path}: the plot is written as PNG; name the file *.png")
    open_loop = opts.rate is not None
    return replace(
        opts,
        endpoint=endpoint,
        url=opts.url.rstrip("/") if opts.url else None,
        concurrency=None if open_loop else (opts.concurrency or DEFAULT_CONCURRENCY),
        connections=(opts.connections or DEFAULT_OPEN_CONNECTIONS) if open_loop else None,
        duration_s=None if opts.requests is not None else (opts.duration_s or DEFAULT_DURATION_S),
    )
