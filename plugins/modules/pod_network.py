#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pod_network
short_description: Put a pod (a network namespace) on CNI networks, the way rkt's --net did
version_added: 0.1.0
description:
  - Creates the pod's network namespace, brings C(lo) up and joins the selected networks in
    order, the i-th network giving interface C(eth<i>).
  - Networks are CNI network confs (C(*.conf)) in O(conf_dir) plus the built-in C(default)
    (ptp, masquerade, 172.16.28.0/24, default route) and C(default-restricted) (ptp, no
    masquerade, 172.31.0.0/16, no routes). A conf of the same name replaces a built-in.
  - Selection follows rkt's networking documentation. No networks means C(default). A list of
    names joins those, and C(default-restricted) is added when C(default) is not among them
    (turn off with O(add_default_restricted=false)). C(all) joins every conf and the built-ins.
    C(host) shares the host's namespace. C(none) gives a namespace with only C(lo).
  - Each name may carry arguments, C(NAME:K=V;K=V). The host-local IPAM honours C(IP=).
  - What was done is saved per pod in O(state_dir), so O(state=absent) needs nothing else. A
    re-run changes only what differs, and repairs attachments whose link, address, route,
    lease or masquerade was removed behind its back. A failure undoes what that run did.
  - Writes C(/etc/netns/<name>/hosts), and C(resolv.conf) when a network's conf gives C(dns),
    so C(ip netns exec <name>) programs see them.
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - pyroute2 >= 0.9
  - netaddr >= 1.0
  - nft (or iptables) for masquerade
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
  name:
    description:
      - The pod's name. The namespace is C(/run/netns/<name>) unless O(netns) is given.
      - Also the owner recorded in leases.
    type: str
  networks:
    description:
      - Networks to join, as rkt's C(--net) took them, for example C([default]),
        C([lan, "db:IP=10.1.0.9"]), C(host), C(none), C(all), or the comma string
        C(default,lan:IP=10.1.0.9).
      - Items may also be dicts with C(name) and C(args).
      - Empty or omitted means C(default).
    type: list
    elements: raw
  pods:
    description:
      - Several pods in one call, each a dict with C(name) and optionally C(networks),
        C(netns) and C(hostname). Mutually exclusive with O(name).
    type: list
    elements: dict
  state:
    description: V(present) puts the pod on the networks, V(absent) undoes everything.
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - Path of an existing network namespace to use instead of creating
        C(/run/netns/<name>). podnet.cni never deletes a namespace it did not create.
    type: path
  hostname:
    description: Hostname written to the pod's hosts file. Defaults to the pod name.
    type: str
  add_default_restricted:
    description:
      - Add C(default-restricted) when C(default) is not among the named networks, as rkt's
        documentation describes.
    type: bool
    default: true
  conf_dir:
    description: Directory of network confs.
    type: path
    default: /etc/rkt/net.d
  data_dir:
    description: Lease directory of the host-local IPAM (the CNI layout), unless a conf sets
      C(ipam.dataDir).
    type: path
    default: /var/lib/cni/networks
  state_dir:
    description: Where podnet.cni keeps its record of each pod and of host-wide changes.
    type: path
    default: /var/lib/podnet
  etc_netns_dir:
    description: Directory of per-namespace C(/etc) files (iproute2's convention).
    type: path
    default: /etc/netns
  nat_backend:
    description: Masquerade through nftables, iptables, or whichever is available.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
  plugin_dirs:
    description:
      - Where a conf's C(type) (or C(ipam.type)) that podnet.cni does not implement is looked
        up as a CNI plugin binary, first match wins. The same list is the plugin's C(CNI_PATH).
      - Omitted means O(conf_dir), C(/usr/lib/rkt/plugins/net), C(/opt/cni/bin),
        C(/usr/lib/cni).
    type: list
    elements: path
notes:
  - Run it on the host whose pods it manages, as root.
  - Host mode warns that abstract unix sockets (X11, D-Bus) are shared with the host.
  - Built-in types are ptp, bridge, macvlan, ipvlan and flannel, with the host-local IPAM.
  - Any other C(type) or C(ipam.type) runs as a third-party CNI plugin binary found in
    O(plugin_dirs), the way rkt ran it - the conf file's bytes on stdin, C(CNI_CONTAINERID) set
    to the pod name. A plugin that is not found fails before anything changes. A plugin that
    fails or prints no CNI result gives its own message, and its DEL is run at once.
    DEL errors at teardown are warnings.
  - Check mode runs no plugin, so it cannot predict a third-party plugin's address. When the
    conf's C(cniVersion) is 0.4.0 or later, a re-run asks the plugin (CNI CHECK) whether the
    attachment is intact. Otherwise it only checks that the pod's interface and addresses are
    there.
  - A third-party IPAM plugin is told C(/run/netns/<name>) as C(CNI_NETNS), even when
    O(netns) names another namespace. Its leases are not checked on a re-run.
"""

EXAMPLES = r"""
- name: Put pod web on the default network
  podnet.cni.pod_network:
    name: web
    networks: [default]

- name: Put pod db on a bridge network with a fixed address, plus default-restricted
  podnet.cni.pod_network:
    name: db
    networks:
      - "lan:IP=10.22.0.9"

- name: Bring many pods up in one call
  podnet.cni.pod_network:
    pods:
      - name: worker-1
        networks: [lan]
      - name: worker-2
        networks: [lan]

- name: Take pod web down again
  podnet.cni.pod_network:
    name: web
    state: absent
"""

RETURN = r"""
netns:
  description: Path of the pod's network namespace (null in host mode).
  returned: state=present and O(name) given
  type: str
  sample: /run/netns/web
mode:
  description: contained, none or host.
  returned: state=present and O(name) given
  type: str
  sample: contained
interfaces:
  description:
    - One entry per network the pod is on, in order.
    - C(address) is the first IPv4 address (else the first one), C(addresses) every address
      the network's IPAM gave (one per range set, so IPv4 and IPv6 for a dual-stack network).
  returned: state=present and O(name) given
  type: list
  elements: dict
  sample:
    - network: default
      type: ptp
      ifname: eth0
      address: 172.16.28.2/24
      addresses: [172.16.28.2/24, "fd00:28::2/64"]
      gateway: 172.16.28.1
      mac: 6a:1f:0c:22:91:3e
      host_ifname: veth1b2c3d4e
pods:
  description: With O(pods), one result per pod (name, mode, netns, interfaces, changed).
  returned: when O(pods) is given
  type: list
  elements: dict
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["create namespace /run/netns/web", "add default (eth0)"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report them missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import
    import pyroute2  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._pod import run_module

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "networks": {"type": "list", "elements": "raw"},
            "pods": {"type": "list", "elements": "dict"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "netns": {"type": "path"},
            "hostname": {"type": "str"},
            "add_default_restricted": {"type": "bool", "default": True},
            "conf_dir": {"type": "path", "default": "/etc/rkt/net.d"},
            "data_dir": {"type": "path", "default": "/var/lib/cni/networks"},
            "state_dir": {"type": "path", "default": "/var/lib/podnet"},
            "etc_netns_dir": {"type": "path", "default": "/etc/netns"},
            "plugin_dirs": {"type": "list", "elements": "path"},
            "nat_backend": {
                "type": "str",
                "choices": ["auto", "nftables", "iptables"],
                "default": "auto",
            },
        },
        required_one_of=[["name", "pods"]],
        mutually_exclusive=[["name", "pods"]],
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pyroute2 and netaddr"), exception=IMPORT_ERROR)
    run_module(module)


if __name__ == "__main__":
    main()
