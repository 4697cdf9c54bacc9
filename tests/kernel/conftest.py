"""Fixtures for tests on the real kernel: sandbox hosts that are removed after each test."""

from __future__ import annotations

import os

import pytest
from sandbox import SandboxHost, leftovers


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        for item in items:
            item.add_marker(pytest.mark.skip(reason="needs root: creates network namespaces"))


@pytest.fixture
def host():
    sandbox = SandboxHost()
    try:
        yield sandbox
    finally:
        sandbox.destroy()


@pytest.fixture
def make_host():
    made: list[SandboxHost] = []

    def factory() -> SandboxHost:
        made.append(SandboxHost())
        return made[-1]

    yield factory
    for sandbox in made:
        sandbox.destroy()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    yield
    left = leftovers()
    assert not left, f"tests left these behind: {left}"
