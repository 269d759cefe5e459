"""Fixtures shared by test files."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of a reachable PostgreSQL database (env GANBENCH_TEST_POSTGRES_URL).

    Skipped with the reason where there is none (`eval "$(bash .ci/postgres.sh)"` starts one);
    failed instead where GANBENCH_REQUIRE_POSTGRES=1, as CI sets it, so a broken server there is
    never a quiet skip.
    """
    url = os.environ.get("GANBENCH_TEST_POSTGRES_URL", "")
    problem = _postgres_problem(url)
    if problem and os.environ.get("GANBENCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{problem} (and GANBENCH_REQUIRE_POSTGRES=1)", pytrace=False)
    if problem:
        pytest.skip(problem)
    return url


def _postgres_problem(url: str) -> str | None:
    if not url:
        return 'no PostgreSQL server: GANBENCH_TEST_POSTGRES_URL is not set (eval "$(bash .ci/postgres.sh)" starts one)'
    try:
        import psycopg2 as driver
    except ImportError:
        try:
            import psycopg as driver  # type: ignore[no-redef]
        except ImportError:
            return "no PostgreSQL driver installed: pip install 'ganbench[postgres]'"
    try:
        driver.connect(url, connect_timeout=5).close()
    except driver.Error as exc:
        from ganbench.store import redact

        return f"PostgreSQL at {redact(url)} does not answer: {str(exc).strip().splitlines()[0]}"
    return None
