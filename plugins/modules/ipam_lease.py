#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ipam_lease
short_description: Reserve, release and reclaim host-local IPAM leases
version_added: 0.1.0
description:
  - Manages the leases of the host-local IPAM in the CNI layout (one file per address under
    C(<data_dir>/<network>/)), the same files M(podnet.cni.pod_network) and CNI's own
    C(host-local) plugin use. Leases of either are seen and never handed out twice.
  - V(present) reserves O(address) for O(owner) on O(ifname), or the next free address when
    O(address) is not given. An owner that already holds a lease on that interface keeps it.
    On a network with several range sets the owner gets one address per range set, as a pod
    would.
  - V(absent) releases the leases of O(owner) (only those on O(ifname) when given), or the
    lease of O(address).
  - O(gc=true) releases every lease whose owner is neither in O(live_owners) nor a pod with a
    saved record in O(state_dir), on O(network) or on every network under O(data_dir).
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - netaddr >= 1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Predicts the addresses it would reserve or release and writes nothing.
  diff_mode:
    support: full
    details: The lease directory as text, one lease a line, before and after.
  platform:
    support: full
    platforms: posix
  idempotent:
    description: Running it again with the same arguments changes nothing.
    support: full
options:
  network:
    description:
      - Name of the network, looked up in O(conf_dir) (built-ins C(default) and
        C(default-restricted) included) to find its ranges and C(ipam.dataDir).
      - To release or reclaim, a network without a conf is accepted when its lease directory
        exists under O(data_dir).
      - Required unless O(gc=true); without it gc looks at every network under O(data_dir).
    type: str
  ipam:
    description:
      - "A host-local C(ipam) object to use instead of looking O(network) up, for example
        C({type: host-local, subnet: 10.1.0.0/24}). O(network) names the lease directory."
    type: dict
  owner:
    description:
      - Who holds the lease, the CNI container ID (M(podnet.cni.pod_network) uses the pod
        name). Required to reserve.
    type: str
  ifname:
    description:
      - Interface of the owner the lease is for. Defaults to C(eth0) when reserving.
      - When releasing by O(owner), omitted means every interface of the owner.
    type: str
  address:
    description:
      - With V(present), reserve exactly this address (it must be in the network's ranges and
        free or already the owner's). With V(absent), release this address.
    type: str
  state:
    description: V(present) reserves, V(absent) releases. Ignored with O(gc=true).
    type: str
    choices: [present, absent]
    default: present
  gc:
    description:
      - Release every lease whose owner is not live. An owner is live when it is in
        O(live_owners) or has a pod record in O(state_dir).
      - Refuses to run when O(state_dir) has no pod records and O(live_owners) is not given;
        pass O(live_owners=[]) to release every lease.
    type: bool
    default: false
  live_owners:
    description: Owners whose leases O(gc=true) keeps, in addition to the recorded pods.
    type: list
    elements: str
  conf_dir:
    description: Directory of network confs.
    type: path
    default: /etc/rkt/net.d
  data_dir:
    description: Lease directory of the host-local IPAM, unless the conf sets C(ipam.dataDir).
    type: path
    default: /var/lib/cni/networks
  state_dir:
    description: Where M(podnet.cni.pod_network) keeps its record of each pod.
    type: path
    default: /var/lib/podnet
notes:
  - Takes the same C(lock) file as CNI's host-local plugin, so it is safe next to running
    pods and the plugin.
  - Only host-local IPAM is managed; a network whose ipam is of another type is an error.
"""

EXAMPLES = r"""
- name: Reserve the next free address of network lan for a VM
  podnet.cni.ipam_lease:
    network: lan
    owner: vm-1

- name: Reserve exactly 10.22.0.50 for pod db
  podnet.cni.ipam_lease:
    network: lan
    owner: db
    address: 10.22.0.50

- name: Release an address, whoever holds it
  podnet.cni.ipam_lease:
    network: lan
    address: 10.22.0.50
    state: absent

- name: Reclaim what crashed pods left on every network
  podnet.cni.ipam_lease:
    gc: true
    live_owners: "{{ running_containers }}"
"""

RETURN = r"""
leases:
  description:
    - V(present) the owner's leases; V(absent) what the owner still holds; O(gc=true) every
      lease left on the networks it looked at.
  returned: always
  type: list
  elements: dict
  sample:
    - address: 10.22.0.5
      owner: db
      ifname: eth0
      network: lan
released:
  description: Leases released (or that would be in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - address: 10.22.0.7
      owner: 9f86d081884c
      ifname: eth0
      network: lan
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["reserve 10.22.0.5 for db (eth0) on lan"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report it missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._lease_module import run_ipam_lease

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "network": {"type": "str"},
            "ipam": {"type": "dict"},
            "owner": {"type": "str"},
            "ifname": {"type": "str"},
            "address": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "gc": {"type": "bool", "default": False},
            "live_owners": {"type": "list", "elements": "str"},
            "conf_dir": {"type": "path", "default": "/etc/rkt/net.d"},
            "data_dir": {"type": "path", "default": "/var/lib/cni/networks"},
            "state_dir": {"type": "path", "default": "/var/lib/podnet"},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=IMPORT_ERROR)

    try:
        result = run_ipam_lease(module)
    except PodnetError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback, never raised raw
        module.fail_json(msg=f"unexpected error: {exc}", exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
