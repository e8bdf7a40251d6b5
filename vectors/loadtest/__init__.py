"""The load generator behind `manage.py benchmark`: endpoints, schedules, statistics, reports."""
