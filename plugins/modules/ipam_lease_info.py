#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ipam_lease_info
short_description: List host-local IPAM leases and whether their owners are live pods
version_added: 0.1.0
description:
  - Reads the lease files of the host-local IPAM (the CNI layout under O(data_dir)), written by
    M(podnet.cni.pod_network), M(podnet.cni.ipam_lease) or CNI's own C(host-local) plugin.
  - Each lease says whether its owner is a live pod, that is has a record in O(state_dir).
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - netaddr >= 1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  network:
    description:
      - Only this network. Its conf in O(conf_dir), when there is one, may move its leases
        with C(ipam.dataDir). Without it, every network under O(data_dir).
    type: str
  conf_dir:
    description: Directory of network confs.
    type: path
    default: /etc/rkt/net.d
  data_dir:
    description: Lease directory of the host-local IPAM.
    type: path
    default: /var/lib/cni/networks
  state_dir:
    description: Where M(podnet.cni.pod_network) keeps its record of each pod.
    type: path
    default: /var/lib/podnet
"""

EXAMPLES = r"""
- name: Who holds which address
  podnet.cni.ipam_lease_info:
  register: leases

- name: Leases of network lan whose owner is gone
  ansible.builtin.debug:
    msg: "{{ leases.leases | selectattr('network', 'eq', 'lan') | rejectattr('live') }}"
"""

RETURN = r"""
networks:
  description: Names of the networks looked at.
  returned: always
  type: list
  elements: str
  sample: [default, lan]
leases:
  description: One entry per lease, by network then address.
  returned: always
  type: list
  elements: dict
  sample:
    - address: 10.22.0.5
      owner: db
      ifname: eth0
      network: lan
      live: true
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report it missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._lease_module import (
        run_ipam_lease_info,
    )

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "network": {"type": "str"},
            "conf_dir": {"type": "path", "default": "/etc/rkt/net.d"},
            "data_dir": {"type": "path", "default": "/var/lib/cni/networks"},
            "state_dir": {"type": "path", "default": "/var/lib/podnet"},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=IMPORT_ERROR)

    try:
        result = run_ipam_lease_info(module)
    except PodnetError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
