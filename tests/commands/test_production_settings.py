"""The production settings pass `check --deploy` and refuse to start without their secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.conftest import ROOT


def run_manage(*args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "embedservice.settings_production", **env_extra}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_at_warning_level_with_production_settings():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="embed.internal.example",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="embed.internal.example")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_require_api_keys_by_default():
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.EMBEDDINGS['REQUIRE_API_KEY'], settings.DEBUG)",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="embed.internal.example",
    )
    assert result.stdout.split()[-2:] == ["True", "False"], result.stderr
