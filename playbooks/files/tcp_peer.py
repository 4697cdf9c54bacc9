"""Make one TCP connection between two network namespaces and print the peer address seen.

Usage: tcp_peer.py SERVER_NETNS ADDRESS PORT CLIENT_NETNS   (namespaces as paths)

A one-shot server listens on ADDRESS:PORT in SERVER_NETNS; a client in CLIENT_NETNS connects
to it; the server reports the source address it saw, which this prints. When the client's own
address is not what gets printed, something between them rewrote it (masquerade). Exits 1 if
no connection happened. Both sides give up by themselves within seconds.
"""

from __future__ import annotations

import subprocess
import sys

SERVER = """
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(1)
listener.settimeout(10)
print("ready", flush=True)
connection, peer = listener.accept()
connection.close()
print(peer[0], flush=True)
"""

CLIENT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
"""


def in_netns(netns: str, code: str, *args: str) -> list[str]:
    return ["nsenter", f"--net={netns}", sys.executable, "-c", code, *args]


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    server_netns, address, port, client_netns = argv

    server = subprocess.Popen(
        in_netns(server_netns, SERVER, address, port), stdout=subprocess.PIPE, text=True
    )
    try:
        if server.stdout.readline().strip() != "ready":
            print(f"server in {server_netns} did not start on {address}:{port}", file=sys.stderr)
            return 1

        client = subprocess.run(
            in_netns(client_netns, CLIENT, address, port),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        if client.returncode != 0:
            print(
                f"client in {client_netns} could not connect to {address}:{port}: "
                f"{client.stderr.strip()}",
                file=sys.stderr,
            )
            return 1

        peer = server.stdout.readline().strip()
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    print(peer)
    return 0 if peer else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
