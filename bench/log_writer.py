"""CPU a row of the request-log writer's inserts (DatabaseSink.write) on a fresh SQLite database.

    .venv/bin/python bench/log_writer.py                 # 20 batches of 500 rows (EMBED_LOG_FLUSH_ROWS)
    .venv/bin/python bench/log_writer.py --batches 40 --rows 250
    .venv/bin/python bench/log_writer.py --database-url postgresql://postgres@127.0.0.1:5432/scratch

Without --database-url it writes to a fresh SQLite file; with one, it migrates that database and adds its
rows to its request log, so give it a scratch database.

The writer thread runs in the serving process and holds the GIL while it builds its statements, so its
CPU a row is taken from the event loop and the model. Process CPU time, so other people's load on the
machine changes the figure less than wall time; quote the median of a few runs. As in the service, SQLite
(CONN_MAX_AGE 0) connects afresh for every batch and PostgreSQL keeps its connection, so compare a
database with itself (before and after a change), not SQLite with PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rows", type=int, default=500, help="rows a batch (the writer's EMBED_LOG_FLUSH_ROWS)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="", help="a scratch database (default: a fresh SQLite file)")
    args = parser.parse_args()

    os.environ["EMBED_DATA_DIR"] = tempfile.mkdtemp(prefix="log-writer-")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from vectors.logstore import DatabaseSink
    from vectors.logwriter import LogEntry

    call_command("migrate", verbosity=0)
    sink = DatabaseSink()

    def batch() -> list[LogEntry]:
        return [
            LogEntry(f"{i:032x}", timezone.now(), "get_vector", "all-MiniLM-L6-v2", "127.0.0.1", 200, inputs=1,
                     tokens=9, total_ms=12.5, queue_ms=3.0, inference_ms=8.0, batch_size=64)
            for i in range(args.rows)
        ]  # fmt: skip

    sink.write(batch())  # untimed: imports and first calls
    per_row = []
    for _ in range(args.runs):
        batches = [batch() for _ in range(args.batches)]
        started = time.process_time()
        for entries in batches:
            sink.write(entries)
        per_row.append((time.process_time() - started) / (args.batches * args.rows) * 1e6)
    sink.close()
    runs = " ".join(f"{us:.1f}" for us in per_row)
    where = connection.vendor
    print(f"{statistics.median(per_row):.1f} us of CPU a row (median; runs {runs}), batches of {args.rows}, {where}")


if __name__ == "__main__":
    main()
