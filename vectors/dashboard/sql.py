"""Database expressions the dashboard needs that Django lacks, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import numpy as np
from django.db import connections
from django.db.models import BigIntegerField, Expression, FloatField, Func, Model
from django.db.models.sql.compiler import SQLCompiler

# (values below this, are cut to a multiple of this step): rounding down to 3 significant digits, in ms.
SIG3_STEPS = ((10, 0.01), (100, 0.1), (1000, 1), (10_000, 10), (100_000, 100))
LAST_STEP = 1000
EPSILON = 1e-9  # so 0.29 * 100 = 28.999999999999996 still lands in the 0.29 bucket


def floor3(value: float) -> float:
    """Round `value` down to 3 significant digits (whole seconds past 100 s): a percentile-histogram bucket.

    The same arithmetic as `Floor3` in SQL, so buckets counted in the database and in Python agree.
    """
    step = next((step for limit, step in SIG3_STEPS if value < limit), LAST_STEP)
    if step < 1:
        scale = round(1 / step)
        return int(value * scale + EPSILON) / scale
    return float(int(value / step) * step)


def floor3_array(values: np.ndarray) -> np.ndarray:
    """`floor3` over a numpy array of non-negative floats (same operations, so the same results)."""
    out = np.empty_like(values)
    lower = -np.inf
    for limit, step in (*SIG3_STEPS, (np.inf, LAST_STEP)):
        chosen = (values >= lower) & (values < limit)
        if step < 1:
            scale = round(1 / step)
            out[chosen] = np.trunc(values[chosen] * scale + EPSILON) / scale
        else:
            out[chosen] = np.trunc(values[chosen] / step) * step
        lower = limit
    return out


class Floor3(Func):
    """SQL: a non-negative number rounded down to 3 significant digits (see `floor3`)."""

    output_field = FloatField()

    def as_sql(self, compiler: SQLCompiler, connection: object, **extra: object) -> tuple[str, list]:
        value, params = compiler.compile(self.source_expressions[0])
        trunc = "CAST(({}) AS INTEGER)" if connection.vendor == "sqlite" else "TRUNC({})"  # type: ignore[attr-defined]

        def cut(step: float) -> str:
            if step < 1:
                scale = round(1 / step)
                return f"{trunc.format(f'{value} * {scale} + {EPSILON}')} / {scale}.0"
            return f"{trunc.format(f'{value} / {step}')} * {step}"

        cases = " ".join(f"WHEN {value} < {limit} THEN {cut(step)}" for limit, step in SIG3_STEPS)
        sql = f"CASE {cases} ELSE {cut(LAST_STEP)} END"
        return sql, params * (len(SIG3_STEPS) * 2 + 1)


class EpochBucket(Func):
    """SQL: seconds since 1970 of a datetime column, divided by `seconds` and rounded down."""

    output_field = BigIntegerField()

    def __init__(self, expression: Expression | str, seconds: int) -> None:
        super().__init__(expression)
        self.seconds = int(seconds)

    def as_sqlite(self, compiler: SQLCompiler, connection: object, **extra: object) -> tuple[str, list]:
        value, params = compiler.compile(self.source_expressions[0])
        return f"(CAST(strftime('%%s', {value}) AS INTEGER) / {self.seconds})", params

    def as_postgresql(self, compiler: SQLCompiler, connection: object, **extra: object) -> tuple[str, list]:
        value, params = compiler.compile(self.source_expressions[0])
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM {value}) / {self.seconds}) AS BIGINT)", params


def distinct_values(model: type[Model], column: str, *, using: str = "default", limit: int = 200) -> list:
    """Return the distinct values of an indexed column by skipping through its index (a loose index scan).

    `SELECT DISTINCT` reads every row; this asks the index for the next larger value once per value,
    so it costs (number of values) x (one index probe) however large the table is.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    table, col = quote(model._meta.db_table), quote(model._meta.get_field(column).column)
    sql = (
        f"WITH RECURSIVE v(x) AS ("
        f" SELECT MIN({col}) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({col}) FROM {table} WHERE {col} > v.x) FROM v WHERE v.x IS NOT NULL"
        f") SELECT x FROM v WHERE x IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]
