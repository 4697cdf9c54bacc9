"""Simulated hosts for real-kernel tests: each a network namespace the test creates and removes.

A sandbox host is a namespace the modules run in (entered with nsenter --net, which keeps the
machine's mount namespace so pod namespaces made inside are visible to everyone), with its
own conf, lease and state dirs. Names carry a per-run prefix; cleanup removes exactly the
namespaces and /etc/netns entries with that prefix, which only this run created.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.environ.get("PODNET_COLLECTIONS") or os.path.join(REPO, ".venv", "collections")
PREFIX = os.environ.get("PODNET_TEST_PREFIX") or f"pnt{secrets.token_hex(2)}"
_counter = itertools.count()


def unique(kind: str) -> str:
    """A short unique name with this run's prefix (kept short: ifnames are <= 15 chars)."""
    return f"{PREFIX}{kind}{next(_counter)}"


def sh(
    argv: list[str], check: bool = True, timeout: float = 30, **kw
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{argv} failed rc={result.returncode}: {result.stderr}{result.stdout}"
        )
    return result


def ns_run(ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command inside a named namespace (net only, like the modules' own host)."""
    return sh(["nsenter", f"--net=/run/netns/{ns}", *argv], **kw)


def ip_json(ns: str, *args: str) -> list:
    out = ns_run(ns, ["ip", "-j", *args]).stdout
    return json.loads(out) if out.strip() else []


def links(ns: str) -> dict[str, dict]:
    return {link["ifname"]: link for link in ip_json(ns, "-d", "link", "show")}


def addresses(ns: str, ifname: str) -> list[str]:
    found = []
    for link in ip_json(ns, "addr", "show", "dev", ifname):
        for info in link.get("addr_info", []):
            if info["family"] == "inet":
                found.append(f"{info['local']}/{info['prefixlen']}")
    return found


def ping(ns: str, address: str, count: int = 1) -> bool:
    result = ns_run(ns, ["ping", "-n", "-q", "-c", str(count), "-W", "1", address], check=False)
    return result.returncode == 0


def nft_ruleset(ns: str) -> dict:
    return json.loads(ns_run(ns, ["nft", "-j", "list", "ruleset"]).stdout or "{}")


def iptables_save(ns: str) -> str:
    return ns_run(ns, ["iptables-save"], check=False).stdout


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def sysctl(ns: str, key: str) -> str:
    return ns_run(ns, ["cat", "/proc/sys/" + key.replace(".", "/")]).stdout.strip()


class TcpServer:
    """A one-connection TCP server in a namespace that answers with the peer's address."""

    def __init__(self, ns: str, port: int, bind: str = "0.0.0.0") -> None:
        code = (
            "import socket,sys\n"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(({bind!r},{port}));s.listen(4);print('ready',flush=True)\n"
            "s.settimeout(20)\n"
            "while True:\n"
            "    c,a=s.accept();c.sendall(a[0].encode());c.close()\n"
        )
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def tcp_peer_seen(ns: str, address: str, port: int) -> str | None:
    """Connect from ns to address:port; return the source address the server saw, or None."""
    code = (
        "import socket,sys\n"
        f"c=socket.create_connection(({address!r},{port}),timeout=2)\n"
        "print(c.recv(100).decode())\n"
    )
    result = ns_run(ns, [sys.executable, "-c", code], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


class ModuleResult(dict):
    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


class SandboxHost:
    """A throwaway 'host': its own network namespace and its own conf, lease and state dirs."""

    def __init__(self) -> None:
        self.name = unique("h")
        self.root = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.conf_dir = os.path.join(self.root, "net.d")
        self.data_dir = os.path.join(self.root, "cni-networks")
        self.state_dir = os.path.join(self.root, "state")
        os.makedirs(self.conf_dir)
        sh(["ip", "netns", "add", self.name])
        ns_run(self.name, ["ip", "link", "set", "lo", "up"])
        self.pods: list[str] = []
        self.outside: str | None = None

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.name}"

    def opts(self, **extra) -> dict:
        """The dir options every module call on this host carries."""
        return {
            "conf_dir": self.conf_dir,
            "data_dir": self.data_dir,
            "state_dir": self.state_dir,
            **extra,
        }

    def pod_name(self) -> str:
        name = unique("p")
        self.pods.append(name)
        return name

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return ns_run(self.name, argv, **kw)

    def module(
        self, name: str, args: dict, check: bool = False, diff: bool = False, with_dirs: bool = True
    ) -> ModuleResult:
        """Run a podnet.cni module inside this host, the way Ansible would, and parse its JSON."""
        payload = dict(args)
        if with_dirs:
            for key, value in self.opts().items():
                payload.setdefault(key, value)
        payload["_ansible_check_mode"] = check
        payload["_ansible_diff"] = diff
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        try:
            env = {**os.environ, "PYTHONPATH": COLLECTIONS}
            result = self.run(
                [
                    sys.executable,
                    "-m",
                    f"ansible_collections.podnet.cni.plugins.modules.{name}",
                    handle.name,
                ],
                check=False,
                env=env,
                timeout=120,
            )
        finally:
            os.unlink(handle.name)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise AssertionError(f"module {name} printed no JSON: {result.stdout}{result.stderr}")
        return ModuleResult(json.loads(lines[-1]))

    def add_outside(self) -> str:
        """Connect an 'outside' host (another namespace) to this host over 203.0.113.0/24.

        The outside has no route to any pod subnet: a pod reaching it proves masquerade.
        """
        self.outside = unique("o")
        sh(["ip", "netns", "add", self.outside])
        ns_run(self.outside, ["ip", "link", "set", "lo", "up"])
        self.run(
            [
                "ip",
                "link",
                "add",
                "uplink0",
                "type",
                "veth",
                "peer",
                "name",
                "wan0",
                "netns",
                self.outside,
            ]
        )
        self.run(["ip", "addr", "add", "203.0.113.1/24", "dev", "uplink0"])
        self.run(["ip", "link", "set", "uplink0", "up"])
        ns_run(self.outside, ["ip", "addr", "add", "203.0.113.2/24", "dev", "wan0"])
        ns_run(self.outside, ["ip", "link", "set", "wan0", "up"])
        return self.outside

    def destroy(self) -> None:
        for ns in [*self.pods, self.outside, self.name]:
            if ns and netns_exists(ns):
                sh(["ip", "netns", "del", ns], check=False)
        for pod in self.pods:
            shutil.rmtree(f"/etc/netns/{pod}", ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def leftovers() -> list[str]:
    """Namespaces and /etc/netns entries of this run that still exist."""
    found = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    found = [f"/run/netns/{n}" for n in found if n.startswith(PREFIX)]
    if os.path.isdir("/etc/netns"):
        found += [f"/etc/netns/{n}" for n in os.listdir("/etc/netns") if n.startswith(PREFIX)]
    return found


def wait_for(predicate, timeout: float = 5.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
