# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""What podnet.cni did for each pod, saved so that teardown needs nothing else."""

from __future__ import annotations

import contextlib
import os

from ansible_collections.podnet.cni.plugins.module_utils._state_files import (
    read_json,
    write_json,
)

STATE_DIR = "/var/lib/podnet"


class PodStore:
    """One JSON record per pod in <state_dir>/pods/<name>.json."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.pods_dir = os.path.join(state_dir, "pods")

    def path(self, name: str) -> str:
        return os.path.join(self.pods_dir, f"{name}.json")

    def load(self, name: str) -> dict | None:
        return read_json(self.path(name), dict)

    def save(self, name: str, record: dict) -> None:
        write_json(self.path(name), record, mode=0o600)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(name))

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.pods_dir)
        except FileNotFoundError:
            return []
        return sorted(e[: -len(".json")] for e in entries if e.endswith(".json"))
