"""A throwaway PostgreSQL cluster for the tuning tests (session scope); see tests.services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Postgres, postgres_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg
