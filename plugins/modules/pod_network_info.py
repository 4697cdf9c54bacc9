#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pod_network_info
short_description: List pods made by podnet.cni.pod_network and their attachments
version_added: 0.1.0
description:
  - Reads the records that M(podnet.cni.pod_network) saves per pod and checks each against
    the kernel, so a pod whose namespace or interface vanished shows as not C(alive).
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - pyroute2 >= 0.9
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
  name:
    description: Only this pod. Without it, every pod.
    type: str
  state_dir:
    description: Where M(podnet.cni.pod_network) keeps its records.
    type: path
    default: /var/lib/podnet
"""

EXAMPLES = r"""
- name: Which pods are on which networks
  podnet.cni.pod_network_info:
  register: pods

- name: Addresses of pod web
  podnet.cni.pod_network_info:
    name: web
  register: web
"""

RETURN = r"""
pods:
  description: One entry per pod.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web
      mode: contained
      netns: /run/netns/web
      alive: true
      interfaces:
        - network: default
          type: ptp
          ifname: eth0
          address: 172.16.28.2/24
          gateway: 172.16.28.1
          mac: 6a:1f:0c:22:91:3e
          host_ifname: veth1b2c3d4e
          present: true
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report them missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import
    import pyroute2  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._pod_info import describe_pods

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "state_dir": {"type": "path", "default": "/var/lib/podnet"},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pyroute2 and netaddr"), exception=IMPORT_ERROR)
    module.exit_json(
        changed=False, pods=describe_pods(module.params["state_dir"], module.params["name"])
    )


if __name__ == "__main__":
    main()
