#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_forward
short_description: Expose a pod's declared ports on host ports, the way rkt's --port did
version_added: 0.1.0
description:
  - Sends traffic for a host port to a port the pod declares, through DNAT on the host. It
    works from other machines, from the host itself (also through C(127.0.0.1)), and from the
    pod itself or its neighbours through a host address (hairpin).
  - The target is the pod's address on the first of its networks with C(ipMasq), else on its
    last network, as rkt chose.
  - A forward restricted to a C(host_ip) answers on that address only, not on
    C(127.0.0.1) nor on the host's other addresses.
  - With nftables, forwards live in table C(inet podnet_forward) as map elements tagged with
    the pod, so lookups stay constant as forwards grow and removal needs no mappings. iptables
    is the fallback (chains C(PODNET-FWD-DNAT) and C(PODNET-FWD-SNAT)).
  - Each change is one nft (or iptables-restore) transaction. A re-run repairs rules removed
    behind its back. V(absent), and M(podnet.cni.pod_network) with V(state=absent), remove
    the rules and restore C(route_localnet) when no other forward needs it.
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - nft (or iptables)
  - netaddr >= 1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    support: full
    platforms: posix
  idempotent:
    description: Running it again with the same arguments changes nothing.
    support: full
options:
  pod:
    description: A pod made by M(podnet.cni.pod_network).
    type: str
    required: true
  ports:
    description:
      - The ports the pod's apps declare, each with C(name), C(port) and C(protocol)
        (V(tcp) or V(udp), default V(tcp)).
    type: list
    elements: dict
    default: []
  forward:
    description:
      - Forwards, as rkt's C(--port) took them, C(NAME:[HOSTIP:]HOSTPORT), or dicts with
        C(name), C(host_port) and optionally C(host_ip).
      - The list is the pod's whole set of forwards; forwards not listed are removed.
    type: list
    elements: raw
    default: []
  state:
    description: V(present) makes the forwards exactly O(forward), V(absent) removes them all.
    type: str
    choices: [present, absent]
    default: present
  state_dir:
    description: Where podnet.cni keeps its record of each pod and of host-wide changes.
    type: path
    default: /var/lib/podnet
  conf_dir:
    description: Directory of network confs (accepted for symmetry with pod_network; unused).
    type: path
    default: /etc/rkt/net.d
  data_dir:
    description: Lease directory (accepted for symmetry with pod_network; unused).
    type: path
    default: /var/lib/cni/networks
  nat_backend:
    description: Forward through nftables, iptables, or whichever is available.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
notes:
  - IPv4 only, like rkt.
  - A host port already forwarded to another pod (same protocol, and the same host IP or
    either one unrestricted) is an error. Rules of a pod no longer known to podnet.cni that
    hold a wanted host port are replaced.
  - The iptables fallback evaluates one rule per forward; nftables uses hash maps.
  - Nothing listens on the host port; tools like C(ss) do not show it.
  - On a bridge network with C(br_netfilter) loaded, a pod reaching its own forward needs
    C(hairpinMode) in the network's conf (as with CNI); its neighbours need nothing.
"""

EXAMPLES = r"""
- name: Forward host port 8080 to the pod's http port
  podnet.cni.port_forward:
    pod: web
    ports:
      - {name: http, port: 80, protocol: tcp}
      - {name: dns, port: 53, protocol: udp}
    forward:
      - http:8080
      - dns:203.0.113.1:5353

- name: Remove the pod's forwards
  podnet.cni.port_forward:
    pod: web
    state: absent
"""

RETURN = r"""
forwards:
  description: The forwards now in place (state=present).
  returned: always
  type: list
  elements: dict
  sample:
    - name: http
      pod: web
      protocol: tcp
      host_ip: null
      host_port: 8080
      address: 172.16.28.2
      port: 80
      subnet: 172.16.28.0/24
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["forward tcp-0.0.0.0:8080 -> 172.16.28.2:80"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report them missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import
    import pyroute2  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._forward import run_module

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pod": {"type": "str", "required": True},
            "ports": {"type": "list", "elements": "dict", "default": []},
            "forward": {"type": "list", "elements": "raw", "default": []},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "state_dir": {"type": "path", "default": "/var/lib/podnet"},
            "conf_dir": {"type": "path", "default": "/etc/rkt/net.d"},
            "data_dir": {"type": "path", "default": "/var/lib/cni/networks"},
            "nat_backend": {
                "type": "str",
                "choices": ["auto", "nftables", "iptables"],
                "default": "auto",
            },
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=IMPORT_ERROR)
    run_module(module)


if __name__ == "__main__":
    main()
