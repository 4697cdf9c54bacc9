# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Host-wide changes shared by pods (sysctls, bridges), counted by owner and undone by the last.

rkt and the CNI plugins switch ip_forward on and create bridges but never undo either. Here
each such change records its original value and the pods that need it; when the last pod
lets go, the original comes back and a bridge podnet made (with no ports left) goes away.
"""

from __future__ import annotations

import os

from ansible_collections.podnet.cni.plugins.module_utils._links import (
    Netlink,
    read_sysctl,
    write_sysctl,
)
from ansible_collections.podnet.cni.plugins.module_utils._state_files import (
    read_json,
    write_json,
)


class HostLedger:
    """<state_dir>/host.json: {"sysctls": {key: {original, value, owners}}, "bridges": {...}}."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "host.json")
        self.reload()

    def reload(self) -> None:
        """Read the file again: call under the state lock, before changing anything."""
        found = read_json(self.path, dict)
        self.entries: dict = found if isinstance(found, dict) else {}
        self.entries.setdefault("sysctls", {})
        self.entries.setdefault("bridges", {})

    def save(self) -> None:
        write_json(self.path, self.entries)

    def acquire_sysctl(self, key: str, value: str, owner: str) -> bool:
        """Make sure key=value for owner; True if the kernel value had to change."""
        entry = self.entries["sysctls"].get(key)
        current = read_sysctl(key)
        changed = current is not None and current != value
        if entry is None:
            entry = {"original": current, "value": value, "owners": []}
            self.entries["sysctls"][key] = entry
        if owner not in entry["owners"]:
            entry["owners"].append(owner)
        self.save()  # before the kernel changes: a killed run still knows the original value
        if changed:
            write_sysctl(key, value)
        return changed

    def release_sysctl(self, key: str, owner: str) -> bool:
        """Drop owner; the last one restores the original value. True if the kernel changed."""
        entry = self.entries["sysctls"].get(key)
        if entry is None or owner not in entry["owners"]:
            return False
        entry["owners"].remove(owner)
        if entry["owners"]:
            self.save()
            return False
        del self.entries["sysctls"][key]
        self.save()
        original = entry.get("original")
        if original is not None and read_sysctl(key) not in (None, original):
            write_sysctl(key, original)
            return True
        return False

    def record_bridge(self, name: str, owner: str, created: bool) -> None:
        entry = self.entries["bridges"].setdefault(name, {"created": created, "owners": []})
        if owner not in entry["owners"]:
            entry["owners"].append(owner)
        self.save()

    def release_bridge(self, name: str, owner: str, host: Netlink) -> bool:
        """Drop owner; delete the bridge when podnet made it and nothing uses it any more."""
        entry = self.entries["bridges"].get(name)
        if entry is None:
            return False
        if owner in entry["owners"]:
            entry["owners"].remove(owner)
        if entry["owners"]:
            self.save()
            return False
        del self.entries["bridges"][name]
        self.save()
        if entry.get("created") and not host.ports(name):
            return host.delete(name)
        for cidr in entry.get("addresses", []):
            address, prefixlen = cidr.split("/")
            host.del_address(name, address, int(prefixlen))
        return bool(entry.get("addresses"))

    def owners(self) -> set[str]:
        found: set[str] = set()
        for section in ("sysctls", "bridges"):
            for entry in self.entries[section].values():
                found.update(entry["owners"])
        return found
