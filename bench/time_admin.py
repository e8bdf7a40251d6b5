"""Time the request-log admin pages (changelist variants, dashboard windows) on the configured database.

Fill the table first with bench/fill_logs.py, then:

    EMBED_DATA_DIR=/tmp/bench-sqlite .venv/bin/python bench/time_admin.py
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/embed_bench .venv/bin/python bench/time_admin.py
    EMBED_DATA_DIR=/tmp/bench-sqlite .venv/bin/python bench/time_admin.py --screenshot docs/dashboard.png

Each page is fetched through Django's test client as a logged-in superuser, --repeat times after one
warm-up fetch; the table shows the best and the median wall time and the process CPU time of the
best run (on a machine shared with other work, wall time also counts waiting for a core). A page
slower than --limit-ms (best run) is marked, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")

DASHBOARD = "/admin/vectors/requestlog/dashboard/"
CHANGELIST = "/admin/vectors/requestlog/"


def pages() -> list[tuple[str, str]]:
    """(label, url) of every page timed; ids and dates come from the table itself."""
    from django.utils import timezone

    from vectors.dashboard.sql import distinct_values
    from vectors.models import RequestLog

    newest = RequestLog.objects.order_by("-created_at").values_list("request_id", "created_at").first()
    request_id, newest_at = newest if newest else ("none", timezone.now())
    day = timezone.localtime(newest_at)
    endpoints = distinct_values(RequestLog, "endpoint")
    models = distinct_values(RequestLog, "model")
    endpoint = endpoints[-1] if endpoints else ""
    model = models[-1] if models else ""
    return [
        ("admin index", "/admin/"),
        ("changelist", CHANGELIST),
        ("changelist, page 50", f"{CHANGELIST}?p=50"),
        (f"changelist, endpoint={endpoint}", f"{CHANGELIST}?endpoint={endpoint}"),
        ("changelist, every error", f"{CHANGELIST}?status=errors"),
        ("changelist, last hour", f"{CHANGELIST}?recent=1h"),
        ("changelist, search request id", f"{CHANGELIST}?q={request_id}"),
        ("changelist, one day", f"{CHANGELIST}?created_at__year={day.year}&created_at__month={day.month}"
                                f"&created_at__day={day.day}"),
        ("dashboard 5m", f"{DASHBOARD}?window=5m"),
        ("dashboard 1h", f"{DASHBOARD}?window=1h"),
        ("dashboard 24h", f"{DASHBOARD}?window=24h"),
        ("dashboard 7d", f"{DASHBOARD}?window=7d"),
        (f"dashboard 7d, endpoint={endpoint}", f"{DASHBOARD}?window=7d&endpoint={endpoint}"),
        (f"dashboard 7d, model={model}", f"{DASHBOARD}?window=7d&model={model}"),
        ("dashboard 24h, endpoint+model", f"{DASHBOARD}?window=24h&endpoint={endpoint}&model={model}"),
    ]  # fmt: skip


def logged_in_client():  # noqa: ANN201 - django.test.Client
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-admin", "bench@example.invalid", None)
    client = Client()
    client.force_login(user)
    return client


def time_pages(repeat: int) -> list[dict]:
    client = logged_in_client()
    results = []
    for label, url in pages():
        client.get(url)  # warm-up: caches, connections, templates
        walls, cpus = [], []
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            answer = client.get(url)
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{url}: HTTP {answer.status_code}")
        best = min(range(repeat), key=walls.__getitem__)
        results.append(
            {"page": label, "best_ms": walls[best], "median_ms": statistics.median(walls), "cpu_ms": cpus[best]}
        )
    return results


def inline_styles(html: str) -> str:
    """Make a rendered admin page self-contained: stylesheets inlined, scripts dropped."""
    from django.contrib.staticfiles import finders

    def style(match: re.Match) -> str:
        path = finders.find(match.group(1).removeprefix("/static/"))
        return f"<style>{Path(path).read_text()}</style>" if path else ""

    html = re.sub(r'<link rel="stylesheet" href="([^"]+)"[^>]*>', style, html)
    return re.sub(r"<script[^>]*src=[^>]*></script>", "", html)


def screenshot(path: Path, window: str) -> None:
    """Render the dashboard, then photograph it with headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found (Debian: apt-get install -y chromium)")
    html = inline_styles(logged_in_client().get(f"{DASHBOARD}?window={window}").content.decode())
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "dashboard.html"
        page.write_text(html)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--hide-scrollbars", f"--screenshot={path.resolve()}",
             "--window-size=1400,1800", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"screenshot of the {window} dashboard: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit-ms", type=float, default=2000.0)
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of the dashboard here")
    parser.add_argument("--window", default="24h", help="dashboard window for --screenshot (default 24h)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from vectors.models import RequestLog

    call_command("migrate", verbosity=0)
    rows = RequestLog.objects.count()
    print(f"{connection.vendor} ({connection.settings_dict['NAME']}): {rows:,} request-log rows\n")
    results = time_pages(args.repeat)
    print("| page | best ms | median ms | CPU ms (best run) |\n|---|---:|---:|---:|")
    slow = []
    for r in results:
        mark = " **SLOW**" if r["best_ms"] > args.limit_ms else ""
        print(f"| {r['page']}{mark} | {r['best_ms']:.0f} | {r['median_ms']:.0f} | {r['cpu_ms']:.0f} |")
        if mark:
            slow.append(r["page"])
    print(f"\nslowest page (best of {args.repeat}): {max(r['best_ms'] for r in results):.0f} ms; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    if args.screenshot:
        screenshot(args.screenshot, args.window)
    if slow:
        raise SystemExit(f"over {args.limit_ms:.0f} ms: {', '.join(slow)}")


if __name__ == "__main__":
    main()
