"""Pods up and down, ms per pod: the CNI reference bridge plugin next to podnet.cni's pod_network.

Run as root: `.venv/bin/python bench/pods.py [--pods 10,50,100] [--out FILE]`.

Every measurement gets a fresh sandbox host (a network namespace named with this run's random
`pnb` prefix, plus a temp dir for confs, leases and state), so no side sees the other's bridge,
leases or links. Everything with the prefix is removed afterwards, also on Ctrl-C or failure.
Timings are wall clock around the whole loop of calls, divided by the number of pods; this is
a measurement, nothing here judges the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".venv", "collections")
CNI_PATH = "/usr/lib/cni"
NETNS_DIR = "/run/netns"
MODULE = "ansible_collections.podnet.cni.plugins.modules.pod_network"
PREFIX = f"pnb{secrets.token_hex(3)}"
NETWORK = "bench"
BRIDGE = "pnbbr0"
SUBNET = "10.200.0.0/16"
GATEWAY_CIDR = "10.200.0.1/16"


class BenchError(Exception):
    """A step of the benchmark did not do what it should: the numbers would be meaningless."""


def sh(argv: list[str], stdin: str | None = None, env: dict | None = None) -> str:
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"{argv} failed rc={result.returncode}: {result.stdout}{result.stderr}")
    return result.stdout


def bridge_conf(data_dir: str) -> dict:
    """The one network both sides bring pods onto; ipMasq off so neither side does NAT."""
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": data_dir},
    }


class Sandbox:
    """A throwaway host: its own network namespace and temp dir, and the pod namespaces in it."""

    count = 0
    made: list[Sandbox] = []

    def __init__(self) -> None:
        Sandbox.count += 1
        self.name = f"{PREFIX}h{Sandbox.count}"
        Sandbox.made.append(self)
        self.root = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.conf_dir = os.path.join(self.root, "net.d")
        self.data_dir = os.path.join(self.root, "leases")
        self.state_dir = os.path.join(self.root, "state")
        self.etc_netns_dir = os.path.join(self.root, "etc-netns")
        self.pods: list[str] = []
        os.makedirs(self.conf_dir)
        sh(["ip", "netns", "add", self.name])
        self.run(["ip", "link", "set", "lo", "up"])

    @property
    def netns(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def pod_name(self, side: str, index: int) -> str:
        """A pod namespace name, remembered so destroy() removes exactly what this host made."""
        self.pods.append(f"{self.name}{side}{index}")
        return self.pods[-1]

    def run(self, argv: list[str], stdin: str | None = None, env: dict | None = None) -> str:
        return sh(["nsenter", f"--net={self.netns}", *argv], stdin=stdin, env=env)

    def bridge_ports(self) -> int:
        out = self.run(["ip", "-j", "link", "show", "master", BRIDGE])
        return len(json.loads(out)) if out.strip() else 0

    def lease_files(self) -> list[str]:
        found = []
        for _root, _dirs, files in os.walk(self.data_dir):
            found += [name for name in files if name[0].isdigit()]
        return found

    def destroy(self) -> None:
        """Pod namespaces first (their veths go with them), then the host with its bridge."""
        for ns in [*self.pods, self.name]:
            if os.path.exists(os.path.join(NETNS_DIR, ns)):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def pod_addresses(names: list[str]) -> list[str]:
    """The IPv4 address on eth0 of each pod, read from the kernel."""
    found = []
    for name in names:
        out = sh(["ip", "-j", "-n", name, "-4", "addr", "show", "dev", "eth0"])
        infos = [info for link in json.loads(out) for info in link.get("addr_info", [])]
        found += [f"{info['local']}/{info['prefixlen']}" for info in infos]
    return found


def check_up(host: Sandbox, names: list[str]) -> None:
    """Every pod on the bridge with its own address from the subnet: the work really happened."""
    ports = host.bridge_ports()
    addresses = pod_addresses(names)
    bridge = host.run(["ip", "-j", "-4", "addr", "show", "dev", BRIDGE])
    gateway = [f"{i['local']}/{i['prefixlen']}" for i in json.loads(bridge)[0]["addr_info"]]
    if ports != len(names) or len(set(addresses)) != len(names) or gateway != [GATEWAY_CIDR]:
        raise BenchError(
            f"after ADD of {len(names)} pods: {ports} bridge ports, "
            f"{len(set(addresses))} distinct pod addresses, bridge addresses {gateway}"
        )


def check_down(host: Sandbox) -> None:
    links = [link["ifname"] for link in json.loads(host.run(["ip", "-j", "link", "show"]))]
    ports = host.bridge_ports() if BRIDGE in links else 0
    leases = host.lease_files()
    if ports or leases:
        raise BenchError(f"after DEL: {ports} bridge ports and leases {leases} remain")


@dataclass
class Timing:
    """Wall seconds for N pods, up and down, of one way of doing it."""

    what: str
    pods: int
    add_s: float
    del_s: float

    def row(self) -> str:
        return (
            f"{self.pods:>5}  {self.what:<34} {1000 * self.add_s / self.pods:>10.1f} "
            f"{1000 * self.del_s / self.pods:>10.1f} {self.add_s:>9.2f} {self.del_s:>9.2f}"
        )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# (a) the CNI reference plugin, one exec per pod, the way a runtime drives it


def cni(host: Sandbox, command: str, pod: str, conf: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod,
        "CNI_NETNS": os.path.join(NETNS_DIR, pod),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": CNI_PATH,
    }
    host.run([os.path.join(CNI_PATH, "bridge")], stdin=conf, env=env)


def bench_cni(count: int) -> list[Timing]:
    host = Sandbox()
    try:
        conf = json.dumps(bridge_conf(host.data_dir))
        names = [host.pod_name("c", i) for i in range(count)]

        netns_add = timed(lambda: [sh(["ip", "netns", "add", name]) for name in names])
        plugin_add = timed(lambda: [cni(host, "ADD", name, conf) for name in names])
        check_up(host, names)

        plugin_del = timed(lambda: [cni(host, "DEL", name, conf) for name in names])
        check_down(host)
        netns_del = timed(lambda: [sh(["ip", "netns", "del", name]) for name in names])
    finally:
        host.destroy()
    return [
        Timing("cni bridge ADD/DEL only", count, plugin_add, plugin_del),
        Timing(
            "cni bridge + ip netns add/del", count, netns_add + plugin_add, plugin_del + netns_del
        ),
    ]


# (b) and (c) podnet.cni's pod_network, run as Ansible runs a module


def pod_network(host: Sandbox, args: dict) -> dict:
    """One module call inside the sandbox host; a failure is raised with the module's message."""
    payload = {
        "conf_dir": host.conf_dir,
        "data_dir": host.data_dir,
        "state_dir": host.state_dir,
        "etc_netns_dir": host.etc_netns_dir,
        "add_default_restricted": False,
        "_ansible_check_mode": False,
        "_ansible_diff": False,
        **args,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=host.root, delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    env = {**os.environ, "PYTHONPATH": COLLECTIONS}
    argv = ["nsenter", f"--net={host.netns}", sys.executable, "-m", MODULE, handle.name]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    os.unlink(handle.name)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"pod_network printed no JSON: {result.stdout}{result.stderr}")
    outcome = json.loads(lines[-1])
    if outcome.get("failed"):
        call = {k: v for k, v in args.items() if k != "pods"}
        if "pods" in args:
            call["pods"] = f"<{len(args['pods'])} pods, first {args['pods'][0]}>"
        raise BenchError(f"pod_network failed with {call}: {outcome.get('msg')}")
    return outcome


def podnet_host() -> Sandbox:
    host = Sandbox()
    with open(os.path.join(host.conf_dir, f"10-{NETWORK}.conf"), "w") as handle:
        json.dump(bridge_conf(host.data_dir), handle)
    return host


def bench_podnet_batch(count: int) -> Timing:
    host = podnet_host()
    try:
        names = [host.pod_name("p", i) for i in range(count)]
        pods = [{"name": name, "networks": [NETWORK]} for name in names]

        add = timed(lambda: pod_network(host, {"pods": pods}))
        check_up(host, names)

        remove = timed(lambda: pod_network(host, {"pods": pods, "state": "absent"}))
        check_down(host)
        left = [name for name in names if os.path.exists(os.path.join(NETNS_DIR, name))]
        if left:
            raise BenchError(f"pod_network state=absent left namespaces {left}")
    finally:
        host.destroy()
    return Timing("podnet pods=[N] (1 call each way)", count, add, remove)


def bench_podnet_each(count: int) -> Timing:
    host = podnet_host()
    try:
        names = [host.pod_name("p", i) for i in range(count)]

        add = timed(lambda: [pod_network(host, {"name": n, "networks": [NETWORK]}) for n in names])
        check_up(host, names)

        remove = timed(lambda: [pod_network(host, {"name": n, "state": "absent"}) for n in names])
        check_down(host)
    finally:
        host.destroy()
    return Timing("podnet name= (N calls each way)", count, add, remove)


# the run as a whole


def warm_up_and_floor(calls: int = 5) -> float:
    """Warm the page cache, then time pod_network calls that have nothing to do (ms per call).

    That floor is what every module call pays before any pod work: interpreter start-up,
    imports, argument parsing and reading the confs.
    """
    host = podnet_host()
    try:
        sh([os.path.join(CNI_PATH, "bridge")], env={"CNI_COMMAND": "VERSION"})
        sh([os.path.join(CNI_PATH, "host-local")], env={"CNI_COMMAND": "VERSION"})
        absent = {"name": host.pod_name("w", 0), "state": "absent"}
        pod_network(host, absent)
        floor = timed(lambda: [pod_network(host, absent) for _call in range(calls)])
    finally:
        host.destroy()
    return 1000 * floor / calls


def root_namespace() -> dict:
    """What this run must never change: the machine's own links, addresses, routes, rules."""
    links = json.loads(sh(["ip", "-j", "link", "show"]))
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    with open("/proc/sys/net/ipv4/ip_forward") as handle:
        ip_forward = handle.read().strip()
    return {
        "links": sorted((link["ifname"], link.get("master", "")) for link in links),
        "addresses": sh(["ip", "-j", "addr", "show"]).count('"local"'),
        "routes": json.loads(sh(["ip", "-j", "route", "show", "table", "all"])),
        "nft": sh(["nft", "list", "ruleset"]),
        "iptables": [line for line in iptables.splitlines() if line.startswith("-")],
        "ip_forward": ip_forward,
    }


def leftovers() -> list[str]:
    found = [os.path.join(NETNS_DIR, n) for n in os.listdir(NETNS_DIR) if n.startswith(PREFIX)]
    temp_root = tempfile.gettempdir()
    found += [os.path.join(temp_root, n) for n in os.listdir(temp_root) if n.startswith(PREFIX)]
    if os.path.isdir("/etc/netns"):
        found += [f"/etc/netns/{n}" for n in os.listdir("/etc/netns") if n.startswith(PREFIX)]
    return found


def machine() -> dict:
    with open("/proc/cpuinfo") as handle:
        models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    with open("/etc/os-release") as handle:
        pretty = [line.split("=", 1)[1].strip().strip('"') for line in handle if "PRETTY" in line]
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else platform.machine(),
        "os": pretty[0] if pretty else platform.system(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure(counts: list[int]) -> tuple[float, list[Timing]]:
    """Every side for every N; whatever happens, remove all this run made and say so."""
    before = root_namespace()
    timings: list[Timing] = []
    try:
        floor_ms = warm_up_and_floor()
        print(f"pod_network call with nothing to do: {floor_ms:.1f} ms per call")
        for count in counts:
            timings += bench_cni(count)
            timings.append(bench_podnet_batch(count))
            timings.append(bench_podnet_each(count))
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for host in Sandbox.made:
            host.destroy()
        left = leftovers()
        changed = [key for key, value in root_namespace().items() if before[key] != value]
        print(f"left behind: {left or 'nothing'}; root namespace changed: {changed or 'no'}")
    return floor_ms, timings


def write_json(path: str, about: dict, floor_ms: float, timings: list[Timing]) -> None:
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": about,
        "pod_network_noop_call_ms": round(floor_ms, 2),
        "conf": bridge_conf("<sandbox data dir>"),
        "results": [
            dict(
                asdict(t),
                add_ms_per_pod=round(1000 * t.add_s / t.pods, 2),
                del_ms_per_pod=round(1000 * t.del_s / t.pods, 2),
            )
            for t in timings
        ],
    }
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="10,50,100", help="comma-separated pod counts")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    options = parser.parse_args()
    counts = [int(n) for n in options.pods.split(",") if n.strip()]
    if os.geteuid() != 0:
        print("needs root: creates network namespaces", file=sys.stderr)
        return 2
    # A background job starts with SIGINT ignored; Ctrl-C must still reach the cleanup.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    os.makedirs(NETNS_DIR, exist_ok=True)

    about = machine()
    print(
        f"kernel {about['kernel']}, {about['cpus']} CPUs ({about['cpu_model']}), {about['os']}, "
        f"python {about['python']}, load {about['loadavg_at_start']}, prefix {PREFIX}"
    )
    started = time.monotonic()
    try:
        floor_ms, timings = measure(counts)
    except BenchError as exc:
        print(f"benchmark step failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything this run made was removed", file=sys.stderr)
        return 130

    print(
        f"\n{'N':>5}  {'what':<34} {'ADD ms/pod':>10} {'DEL ms/pod':>10} {'ADD s':>9} {'DEL s':>9}"
    )
    for timing in timings:
        print(timing.row())
    print(f"\ntotal run time {time.monotonic() - started:.0f} s")
    if options.out:
        write_json(options.out, about, floor_ms, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
