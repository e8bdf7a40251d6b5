"""Option validation: contradictions and out-of-range values are refused with a message naming the option."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vectors.loadtest.options import BenchmarkOptions, InvalidOptions, parse_batch_sizes, validate


def test_defaults_are_a_closed_loop_of_64_clients_for_20_seconds_on_openai_float():
    opts = validate(BenchmarkOptions())
    assert (opts.mode, opts.concurrency, opts.duration_s, opts.endpoint) == ("closed", 64, 20.0, "openai-float")
    assert opts.connections is None


def test_an_open_loop_gets_a_connection_pool_and_no_concurrency():
    opts = validate(BenchmarkOptions(rate=50.0))
    assert (opts.mode, opts.concurrency, opts.connections) == ("open", None, 1000)


def test_a_request_budget_replaces_the_duration():
    opts = validate(BenchmarkOptions(requests=500))
    assert opts.duration_s is None and opts.requests == 500


def test_compare_loads_get_vector():
    assert validate(BenchmarkOptions(compare=True)).endpoint == "get_vector"


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (BenchmarkOptions(concurrency=4, rate=10.0), "not both"),
        (BenchmarkOptions(concurrency=0), "--concurrency must be at least 1"),
        (BenchmarkOptions(rate=0.0), "--rate must be more than 0"),
        (BenchmarkOptions(rate=-3.0), "--rate must be more than 0"),
        (BenchmarkOptions(connections=10), "--connections only applies to --rate"),
        (BenchmarkOptions(rate=5.0, connections=0), "--connections must be at least 1"),
        (BenchmarkOptions(duration_s=5.0, requests=10), "--duration or --requests, not both"),
        (BenchmarkOptions(duration_s=0.0), "--duration must be more than 0"),
        (BenchmarkOptions(requests=0), "--requests must be at least 1"),
        (BenchmarkOptions(warmup_s=-1.0), "--warmup cannot be negative"),
        (BenchmarkOptions(timeout_s=0.0), "--timeout must be more than 0"),
        (BenchmarkOptions(inputs_per_request=0), "--inputs-per-request must be at least 1"),
        (BenchmarkOptions(limit_seconds=0.0), "--limit-seconds must be more than 0"),
        # Not finite: an open loop at an infinite rate sends without ever yielding, a NaN warm-up measures
        # nothing, an infinite duration never ends.
        (BenchmarkOptions(rate=math.inf), "--rate must be more than 0 requests/s, and finite (got inf)"),
        (BenchmarkOptions(rate=math.nan), "--rate must be more than 0 requests/s, and finite"),
        (BenchmarkOptions(duration_s=math.inf), "--duration must be more than 0 seconds, and finite"),
        (BenchmarkOptions(warmup_s=math.nan), "--warmup cannot be negative, and must be finite (got nan)"),
        (BenchmarkOptions(warmup_s=math.inf), "--warmup cannot be negative, and must be finite"),
        (BenchmarkOptions(timeout_s=math.inf), "--timeout must be more than 0 seconds, and finite"),
        (BenchmarkOptions(limit_seconds=math.nan), "--limit-seconds must be more than 0, and finite"),
        (BenchmarkOptions(endpoint="grpc"), "--endpoint 'grpc': choose one of"),
        (BenchmarkOptions(endpoint="get_vector", inputs_per_request=4), "takes 1 text per request"),
        (BenchmarkOptions(compare=True, endpoint="tei"), "leave out --endpoint"),
        (BenchmarkOptions(compare=True, inputs_per_request=2), "leave out --inputs-per-request"),
        (BenchmarkOptions(url="ftp://127.0.0.1"), "not an http(s) URL"),
        (BenchmarkOptions(url="127.0.0.1:8000"), "not an http(s) URL"),
        (BenchmarkOptions(url="http://127.0.0.1:8000/v1"), "without a path"),
        (BenchmarkOptions(url="http://10.0.0.5:8000"), "needs --allow-remote"),
        (BenchmarkOptions(url="http://embed.example.com"), "needs --allow-remote"),
        (BenchmarkOptions(corpus=Path("/no/such/corpus.txt")), "no such file"),
        (BenchmarkOptions(json_path=Path("/no/such/dir/out.json")), "does not exist"),
        (BenchmarkOptions(plot_path=Path("plot.svg")), "name the file *.png"),
    ],
)
def test_bad_options_are_refused_with_a_message_naming_the_option(opts, message):
    with pytest.raises(InvalidOptions) as caught:
        validate(opts)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000", "http://127.1.2.3"]
)
def test_loopback_urls_are_accepted_and_lose_their_trailing_slash(url):
    assert validate(BenchmarkOptions(url=url)).url == url.rstrip("/")


def test_a_remote_url_is_accepted_with_allow_remote():
    assert validate(BenchmarkOptions(url="http://10.0.0.5:8000", allow_remote=True)).url == "http://10.0.0.5:8000"


def test_batch_sizes_parse_from_a_comma_separated_list():
    assert parse_batch_sizes("16, 32,64") == (16, 32, 64)
    for bad in ("", "16,x", "0,8", "-4"):
        with pytest.raises(InvalidOptions, match="--limit-batch-sizes"):
            parse_batch_sizes(bad)
