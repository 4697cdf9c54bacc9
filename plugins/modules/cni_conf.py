#!/usr/bin/python
# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: cni_conf
short_description: Manage a CNI network conf file in a net.d directory
description:
  - Writes, updates or removes one CNI network conf (a C(.conf) JSON file) in the directory that
    M(podnet.cni.pod_network) reads networks from, the way rkt read C(/etc/rkt/net.d).
  - The conf is validated before anything is written, with the checks the reference plugins make
    and stricter ones where they misbehave (for example a host-local C(rangeStart) after the
    range end, or an explicit network or broadcast address in a range). A bad conf fails the task
    with the field and value named, and nothing is written.
  - Keys are accepted in any letter case (as rkt and the Go plugins read them) and written in
    their canonical spelling.
  - A file whose content already equals the conf (compared as parsed JSON with addresses
    normalised, so formatting and key order do not matter) is left alone.
version_added: 0.1.0
author:
  - podnet.cni maintainers (@podnet)
requirements:
  - netaddr
options:
  conf:
    description:
      - The whole network conf, as it would appear in the file (C(name), C(type), C(ipam), ...).
      - Required with O(state=present). With O(state=absent) only its C(name) is used.
    type: dict
  name:
    description:
      - The network name. With O(state=absent) and neither O(path) nor O(ordinal), every conf
        file in O(conf_dir) defining this network is removed.
      - With O(state=present) it must equal C(conf.name) when both are given.
    type: str
  ordinal:
    description:
      - File name prefix that orders the network among the pod's interfaces; the file becomes
        C(<ordinal>-<name>.conf). Networks are sorted byte-wise by file name, and the first
        gets C(eth0).
      - Without O(ordinal) or O(path) the file is C(<name>.conf).
    type: raw
  path:
    description:
      - Explicit path of the conf file, instead of one derived from O(ordinal) and the name.
    type: path
  conf_dir:
    description:
      - The net.d directory. It is created (mode 0755) when missing.
      - Another file in it defining the same network name makes the task fail.
    type: path
    default: /etc/rkt/net.d
  state:
    description:
      - V(present) writes the conf; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - File mode of the conf file, as an octal string such as V('0644').
    type: raw
    default: '0644'
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the file would be written or removed, and the diff, without
      touching anything.
  diff_mode:
    support: full
    details: The diff is the rendered JSON text of the file before and after.
  idempotent:
    description: Running it again with the same arguments changes nothing.
    support: full
  platform:
    support: full
    platforms: posix
notes:
  - Files are written atomically (a temporary file in the same directory, then a rename), so a
    pod being set up never reads a half-written conf.
  - Built-in networks C(default) and C(default-restricted) have no file; writing a conf with one
    of those names overrides the built-in.
"""

EXAMPLES = r"""
- name: A bridge network with NAT, ordered before the built-ins
  podnet.cni.cni_conf:
    ordinal: "10"
    conf:
      name: lan
      type: bridge
      bridge: rkt1
      isGateway: true
      ipMasq: true
      ipam:
        type: host-local
        subnet: 10.1.0.0/24
        routes:
          - dst: 0.0.0.0/0

- name: Override the built-in default network with a larger subnet
  podnet.cni.cni_conf:
    path: /etc/rkt/net.d/99-default.conf
    conf:
      name: default
      type: ptp
      ipMasq: true
      ipam:
        type: host-local
        subnet: 172.16.0.0/16
        routes:
          - dst: 0.0.0.0/0

- name: Remove the network lan, whatever its file is called
  podnet.cni.cni_conf:
    name: lan
    state: absent
"""

RETURN = r"""
path:
  description: The conf file written, kept, or (first) removed; null when nothing matched.
  returned: always
  type: str
  sample: /etc/rkt/net.d/10-lan.conf
conf:
  description: The validated conf with keys in canonical spelling, as written to the file.
  returned: when O(state=present)
  type: dict
  sample: {"name": "lan", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
removed:
  description: The files removed (or that would be in check mode).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [/etc/rkt/net.d/10-lan.conf]
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: [create /etc/rkt/net.d/10-lan.conf]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    # Imported only to report them missing: the module_utils guard their own imports.
    import netaddr  # noqa: F401  # pylint: disable=unused-import

    from ansible_collections.podnet.cni.plugins.module_utils._conf import (
        DEFAULT_CONF_DIR,
        run_cni_conf,
    )
except ImportError:
    NETADDR_IMPORT_ERROR: str | None = traceback.format_exc()
    DEFAULT_CONF_DIR = "/etc/rkt/net.d"
else:
    NETADDR_IMPORT_ERROR = None

from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "conf": {"type": "dict"},
            "name": {"type": "str"},
            "ordinal": {"type": "raw"},
            "path": {"type": "path"},
            "conf_dir": {"type": "path", "default": DEFAULT_CONF_DIR},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "mode": {"type": "raw", "default": "0644"},
        },
        mutually_exclusive=[("path", "ordinal")],
        required_if=[
            ("state", "present", ("conf",)),
            ("state", "absent", ("conf", "name", "path"), True),
        ],
        supports_check_mode=True,
    )
    if NETADDR_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=NETADDR_IMPORT_ERROR)

    try:
        result = run_cni_conf(module)
    except PodnetError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
