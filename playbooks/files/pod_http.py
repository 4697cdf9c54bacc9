"""A tiny HTTP server inside a pod for the port-forward demo, and a client to ask it.

Usage:
  pod_http.py start POD_NETNS PORT PIDFILE   start the server in the pod, detached; prints
                                             "started", or "running" when it already runs
  pod_http.py stop PIDFILE                   stop it; prints "stopped" or "not running"
  pod_http.py get ADDRESS PORT [NETNS]       one GET from NETNS (default: this namespace);
                                             prints the body that came back

The server answers every GET with the pod's name and the client address it saw, so the demo
shows both that the request went through the forward and whether it was masqueraded. It exits
by itself once its pod's namespace is deleted (checked every second), so a teardown that falls
back to deleting namespaces leaves no process behind.
"""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import tempfile
import time

MARK = "pod_http.py"


class Answer(http.server.BaseHTTPRequestHandler):
    pod = "pod"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = f"hello from {self.pod}: you came from {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve(pod_netns: str, port: int, pidfile: str) -> int:
    """The server's body; runs inside the pod's namespace (entered by nsenter)."""
    Answer.pod = os.path.basename(pod_netns)
    server = http.server.HTTPServer(("0.0.0.0", port), Answer)
    server.timeout = 1
    own = os.stat("/proc/self/ns/net").st_ino

    # Atomically, so that `start` never reads half a pid; ready once the socket listens.
    handle, path = tempfile.mkstemp(dir=os.path.dirname(pidfile) or ".")
    with os.fdopen(handle, "w") as out:
        out.write(f"{os.getpid()}\n")
    os.replace(path, pidfile)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

    def namespace_alive() -> bool:
        try:
            return os.stat(pod_netns).st_ino == own
        except OSError:
            return False

    while namespace_alive():
        server.handle_request()
    server.server_close()
    return 0


def running(pidfile: str) -> int | None:
    """The server's pid when the pidfile names a live server of ours, else None."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if any(arg.endswith(MARK.encode()) for arg in argv) and b"serve" in argv else None


def start(pod_netns: str, port: int, pidfile: str) -> int:
    if running(pidfile):
        print("running")
        return 0

    os.makedirs(os.path.dirname(pidfile) or ".", exist_ok=True)
    server = subprocess.Popen(
        [
            "nsenter",
            f"--net={pod_netns}",
            sys.executable,
            os.path.abspath(__file__),
            "serve",
            pod_netns,
            str(port),
            pidfile,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own session: Ansible's task ends without waiting for it or taking it along.
        start_new_session=True,
    )
    if server.stdout.readline().strip() != "ready":
        server.wait(timeout=10)
        print(f"the server in {pod_netns} did not start: {server.stderr.read()}", file=sys.stderr)
        return 1
    print("started")
    return 0


def stop(pidfile: str) -> int:
    pid = running(pidfile)
    if pid is None:
        print("not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        print("stopped")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    try:
        os.rmdir(os.path.dirname(pidfile))
    except OSError:
        pass  # not empty, or already gone: either way not this server's to remove
    return 0


def get(address: str, port: int, netns: str | None) -> int:
    if netns:
        argv = [sys.executable, os.path.abspath(__file__), "get", address, str(port)]
        return subprocess.run(["nsenter", f"--net={netns}", *argv], check=False).returncode
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode().strip()
    except OSError as exc:
        print(f"GET http://{address}:{port}/ failed: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    print(body)
    return 0 if response.status == 200 else 1


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "start" and len(args) == 3:
        return start(args[0], int(args[1]), args[2])
    if command == "serve" and len(args) == 3:
        return serve(args[0], int(args[1]), args[2])
    if command == "stop" and len(args) == 1:
        return stop(args[0])
    if command == "get" and len(args) in (2, 3):
        return get(args[0], int(args[1]), args[2] if len(args) == 3 else None)
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
