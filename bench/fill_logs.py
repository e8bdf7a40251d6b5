"""Fill the RequestLog table fast with plausible rows, to time the admin at scale.

Usage (the database comes from the usual settings: DATABASE_URL, or the SQLite file in EMBED_DATA_DIR):

    EMBED_DATA_DIR=/tmp/bench-sqlite .venv/bin/python bench/fill_logs.py --rows 1000000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/embed_bench .venv/bin/python bench/fill_logs.py --rows 1000000

Rows are spread evenly over the last --days days, with a mix of endpoints, models, statuses and
batch sizes like a service under mixed load. SQLite gets one executemany in one transaction, then
ANALYZE; PostgreSQL gets COPY, then VACUUM ANALYZE (what autovacuum does for a live table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")

COLUMNS = (
    "request_id",
    "created_at",
    "endpoint",
    "model",
    "caller",
    "status",
    "error_code",
    "inputs",
    "tokens",
    "total_ms",
    "queue_ms",
    "inference_ms",
    "batch_size",
    "text_sample",
)
ENDPOINTS = (("openai", 0.6), ("tei", 0.25), ("get_vector", 0.1), ("similarity", 0.05))
MODELS = (("all-MiniLM-L6-v2", 0.85), ("multilingual-MiniLM-L12-v2", 0.15))
STATUSES = (
    (200, "", 0.955),
    (400, "invalid_request", 0.02),
    (422, "input_too_long", 0.005),
    (429, "queue_full", 0.01),
    (503, "queue_timeout", 0.005),
    (499, "client_closed", 0.003),
    (500, "model_error", 0.002),
)
CALLERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13", "billing-service", "search-indexer")


def pick(rng: np.random.Generator, choices: tuple, n: int) -> np.ndarray:
    weights = np.array([c[-1] for c in choices], dtype=float)
    return rng.choice(len(choices), size=n, p=weights / weights.sum())


def generate(rows: int, days: float, seed: int, chunk: int) -> Iterator[list[tuple]]:
    """Yield chunks of row tuples in COLUMNS order, oldest first."""
    rng = np.random.default_rng(seed)
    run = uuid.uuid4().hex[:8]
    end = datetime.now(UTC).replace(tzinfo=None)
    span_us = int(days * 86400 * 1e6)
    # Arrival times: uniform over the span, sorted (ids follow time, as with a live writer).
    offsets = np.sort(rng.integers(0, span_us, size=rows))
    start = np.datetime64(end - timedelta(microseconds=span_us), "us")
    for first in range(0, rows, chunk):
        n = min(chunk, rows - first)
        times = np.datetime_as_string(start + offsets[first : first + n].astype("timedelta64[us]"), unit="us")
        created = np.char.replace(times, "T", " ")
        endpoint = pick(rng, ENDPOINTS, n)
        model = pick(rng, MODELS, n)
        status = pick(rng, STATUSES, n)
        inputs = np.where(rng.random(n) < 0.8, 1, rng.integers(2, 65, size=n))
        tokens = inputs * rng.integers(6, 40, size=n)
        batch = np.minimum(128, np.maximum(inputs, rng.geometric(0.04, size=n)))
        queue = rng.lognormal(np.log(4), 0.9, size=n)
        inference = rng.lognormal(np.log(25), 0.5, size=n) * (1 + batch / 64)
        total = queue + inference + rng.lognormal(np.log(1.5), 0.4, size=n)
        chunk_rows = []
        for i in range(n):
            code, err = STATUSES[status[i]][0], STATUSES[status[i]][1]
            served = code in (200, 499)
            chunk_rows.append(
                (
                    f"fill-{run}-{first + i:09d}",
                    str(created[i]),
                    ENDPOINTS[endpoint[i]][0],
                    MODELS[model[i]][0],
                    CALLERS[(first + i) % len(CALLERS)],
                    code,
                    err,
                    int(inputs[i]),
                    int(tokens[i]) if served else 0,
                    round(float(total[i] if served else total[i] / 20), 3),
                    round(float(queue[i]), 3) if served else None,
                    round(float(inference[i]), 3) if code == 200 else None,
                    int(batch[i]) if code == 200 else None,
                    "",
                )
            )
        yield chunk_rows


def fill(rows: int, days: float, seed: int, truncate: bool, out: object = sys.stdout) -> float:
    """Insert `rows` generated rows into RequestLog; return the seconds it took."""
    from django.db import connection, transaction

    from vectors.models import RequestLog

    table = RequestLog._meta.db_table
    if truncate:
        RequestLog.objects.all()._raw_delete(connection.alias)
    started = time.perf_counter()
    chunk = 50_000
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor, transaction.atomic():
            raw = cursor.cursor
            columns = ", ".join(COLUMNS)
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for part in generate(rows, days, seed, chunk):
                    for row in part:
                        copy.write_row(row)
                    print(f"  {len(part)} rows", file=out, flush=True)
        # What autovacuum does to a table that takes inserts all day: statistics, and the visibility
        # map that lets counts be answered from indexes alone. Not in a transaction block.
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")
    else:
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        with transaction.atomic(), connection.cursor() as cursor:
            for part in generate(rows, days, seed, chunk):
                cursor.executemany(sql, part)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="spread rows over the last DAYS days (default 7)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--truncate", action="store_true", help="delete every existing row first")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    seconds = fill(args.rows, args.days, args.seed, args.truncate)
    from vectors.models import RequestLog

    print(
        f"{connection.vendor}: inserted {args.rows} rows in {seconds:.1f} s "
        f"({args.rows / seconds:,.0f} rows/s); table now holds {RequestLog.objects.count():,} rows"
    )


if __name__ == "__main__":
    main()
