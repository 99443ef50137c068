"""Shared fixtures: a hypothesis "ci" profile, and fixtures that run a test at every SIMD
level this machine supports and at 1 and 2 threads."""
from __future__ import annotations

import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

import gradsparse

# On a failing example hypothesis' pytest plugin imports its patch writer (libcst), whose
# import emits a third-party DeprecationWarning; with filterwarnings = error that would turn
# every hypothesis failure into an INTERNALERROR. Import it once here, warnings silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # optional dependency (libcst) missing or changed: nothing to pre-import
        pass

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=300, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


SIMD_LEVELS = gradsparse.available_simd_levels()
THREAD_COUNTS = [1, 2]


@pytest.fixture(params=SIMD_LEVELS)
def simd(request):
    """Runs the test body at one available SIMD level (the name is the fixture value)."""
    with gradsparse.simd_level(request.param):
        yield request.param


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"threads{n}")
def threads(request):
    """Runs the test body with 1 or 2 engine threads."""
    with gradsparse.num_threads(request.param):
        yield request.param


@pytest.fixture
def engine(simd, threads):
    """Every (SIMD level, thread count) pair."""
    return simd, threads


@pytest.fixture(autouse=True)
def _engine_state_restored():
    """No test may leak a SIMD level or thread count into the next one."""
    level, nthreads = gradsparse.get_simd_level(), gradsparse.get_num_threads()
    yield
    assert gradsparse.get_simd_level() == level
    assert gradsparse.get_num_threads() == nthreads


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs Flower's real runtimes (tens of seconds); deselect with "
                                       "-m 'not slow'")
