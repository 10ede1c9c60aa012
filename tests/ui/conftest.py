from __future__ import annotations

import pytest

from repgeom.settings import Settings
from repgeom.ui import create_app
from tests.dash_client import DashClient


@pytest.fixture(scope="module")
def app(engine):
    return create_app(Settings(warm=False), engine=engine)


@pytest.fixture(scope="module")
def dash(app):
    return DashClient(app)
