"""Network confs: key case, validation, host-local ranges, loading a net.d dir, file plans."""

from __future__ import annotations

import json
import os

import pytest
from netaddr import IPAddress, IPNetwork

from ansible_collections.podnet.cni.plugins.module_utils._conf import (
    NetConf,
    Range,
    apply_conf_file,
    available,
    built_ins,
    host_local_ranges,
    load_dir,
    normalise_keys,
    parse_mode,
    plan_conf_file,
    render,
    validate,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError, PodnetError

WHERE = 'conf "/etc/rkt/net.d/10-lan.conf"'


def host_local(**ipam) -> dict:
    return {"name": "lan", "type": "ptp", "ipam": {"type": "host-local", **ipam}}


# --- key case --------------------------------------------------------------------------------

KEY_CASES = [
    (
        {"Name": "a", "TYPE": "ptp", "IpMasq": True, "MTU": 1400},
        {"name": "a", "type": "ptp", "ipMasq": True, "mtu": 1400},
    ),
    (
        {"name": "a", "type": "ptp", "Ipam": {"Type": "host-local", "SUBNET": "10.0.0.0/24"}},
        {"name": "a", "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}},
    ),
    (
        {"name": "a", "ipam": {"rangestart": "x", "RANGEEND": "y", "Gateway": "z", "datadir": "d"}},
        {"name": "a", "ipam": {"rangeStart": "x", "rangeEnd": "y", "gateway": "z", "dataDir": "d"}},
    ),
    (
        {"name": "a", "ipam": {"Routes": [{"DST": "0.0.0.0/0", "Gw": "10.0.0.1"}]}},
        {"name": "a", "ipam": {"routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]}},
    ),
    (
        {"name": "a", "ipam": {"Ranges": [[{"Subnet": "s", "RangeStart": "r"}]]}},
        {"name": "a", "ipam": {"ranges": [[{"subnet": "s", "rangeStart": "r"}]]}},
    ),
    (
        {"DNS": {"NameServers": ["1.1.1.1"], "Domain": "d", "SEARCH": [], "Options": []}},
        {"dns": {"nameservers": ["1.1.1.1"], "domain": "d", "search": [], "options": []}},
    ),
    (
        {"isdefaultgateway": True, "ISGATEWAY": True, "HairpinMode": False, "promiscmode": False},
        {"isDefaultGateway": True, "isGateway": True, "hairpinMode": False, "promiscMode": False},
    ),
    (
        {"Bridge": "br0", "ForceAddress": True, "Master": "eth0", "Mode": "l2", "CNIVersion": "x"},
        {"bridge": "br0", "forceAddress": True, "master": "eth0", "mode": "l2", "cniVersion": "x"},
    ),
    (
        {"SubnetFile": "/f", "Delegate": {"Type": "bridge", "IsGateway": True}},
        {"subnetFile": "/f", "delegate": {"type": "bridge", "isGateway": True}},
    ),
    (
        {"name": "a", "MyPluginKey": {"Subnet": 1}, "ipam": {"Custom": 2}},
        {"name": "a", "MyPluginKey": {"Subnet": 1}, "ipam": {"Custom": 2}},
    ),
]


@pytest.mark.parametrize(("given", "expected"), KEY_CASES)
def test_keys_are_read_in_any_case_and_unknown_keys_pass_through(given, expected):
    assert normalise_keys(given, WHERE) == expected


def test_normalising_keys_leaves_the_input_alone():
    given = {"Name": "a", "Ipam": {"Subnet": "10.0.0.0/24"}}
    normalise_keys(given, WHERE)
    assert given == {"Name": "a", "Ipam": {"Subnet": "10.0.0.0/24"}}


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"name": "a", "Name": "b"}, "name"),
        ({"name": "a", "ipam": {"subnet": "x", "Subnet": "y"}}, "ipam.subnet"),
    ],
)
def test_a_key_given_twice_in_different_case_is_an_error(given, field):
    with pytest.raises(ConfError) as caught:
        normalise_keys(given, WHERE)
    assert caught.value.field == field
    assert "given twice" in str(caught.value)


def test_validate_returns_canonical_keys():
    conf = validate(
        {"NAME": "lan", "Type": "ptp", "IPAM": {"TYPE": "host-local", "subnet": "10.1.0.0/24"}},
        WHERE,
    )
    assert conf == {
        "name": "lan",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
    }


# --- validation ------------------------------------------------------------------------------

# fmt: off
BAD_CONFS = [
    # (conf, field, value shown, words of the reason)
    ({"name": "bad name", "type": "ptp"}, "name", "'bad name'", "letters, digits"),
    ({"name": "-lead", "type": "ptp"}, "name", "'-lead'", "starting with"),
    ({"name": 7, "type": "ptp"}, "name", "7", "must be a string"),
    ({"name": "lan", "type": ""}, "type", "''", "non-empty"),
    ({"name": "lan", "type": ["ptp"]}, "type", "['ptp']", "non-empty string"),
    ({"name": "lan", "type": "bridge", "cniVersion": 1}, "cniVersion", "1", "string"),
    ({**host_local(subnet="10.1.0.0/24"), "ipMasq": "yes"}, "ipMasq", "'yes'", "true or false"),
    ({**host_local(subnet="10.1.0.0/24"), "mtu": 67}, "mtu", "67", "68 to 65535"),
    ({**host_local(subnet="10.1.0.0/24"), "mtu": 65536}, "mtu", "65536", "68 to 65535"),
    ({**host_local(subnet="10.1.0.0/24"), "mtu": "1500"}, "mtu", "'1500'", "integer"),
    ({**host_local(subnet="10.1.0.0/24"), "mtu": True}, "mtu", "True", "integer"),
    ({"name": "lan", "type": "ptp", "ipam": "host-local"}, "ipam", "'host-local'", "object"),
    ({"name": "lan", "type": "bridge", "bridge": "a-very-long-bridge"}, "bridge",
     "'a-very-long-bridge'", "longer than 15"),
    ({"name": "lan", "type": "bridge", "bridge": "br/0"}, "bridge", "'br/0'", "interface name"),
    ({"name": "lan", "type": "bridge", "bridge": "br 0"}, "bridge", "'br 0'", "interface name"),
    ({"name": "lan", "type": "bridge", "isGateway": 1}, "isGateway", "1", "true or false"),
    ({"name": "lan", "type": "bridge", "hairpinMode": "true"}, "hairpinMode", "'true'",
     "true or false"),
    ({"name": "lan", "type": "bridge", "isDefaultGateway": True, "isGateway": False},
     "isGateway", "False", "implies isGateway"),
    ({"name": "lan", "type": "bridge", "hairpinMode": True, "promiscMode": True},
     "promiscMode", "True", "hairpinMode"),
    ({"name": "lan", "type": "bridge", "vlan": 4095}, "vlan", "4095", "0..4094"),
    ({"name": "lan", "type": "macvlan", "master": "eth0", "mode": "l2"}, "mode", "'l2'",
     "macvlan mode"),
    ({"name": "lan", "type": "ipvlan", "master": "eth0", "mode": "bridge"}, "mode", "'bridge'",
     "ipvlan mode"),
    ({"name": "lan", "type": "macvlan", "master": ""}, "master", "''", "interface name"),
    ({"name": "lan", "type": "ipvlan", "master": "e:1"}, "master", "'e:1'", "interface name"),
    (host_local(subnet="10.1.0.0/33"), "ipam.subnet", "'10.1.0.0/33'", "not a CIDR"),
    (host_local(subnet="10.1.0.0"), "ipam.subnet", "'10.1.0.0'", "not a CIDR"),
    (host_local(subnet="10.1.0.5/24"), "ipam.subnet", "'10.1.0.5/24'",
     "network address is 10.1.0.0"),
    (host_local(subnet="10.1.0.0/31"), "ipam.subnet", "'10.1.0.0/31'", "too small"),
    (host_local(subnet="10.1.0.1/32"), "ipam.subnet", "'10.1.0.1/32'", "too small"),
    (host_local(subnet="2001:db8::/127"), "ipam.subnet", "'2001:db8::/127'", "too small"),
    (host_local(subnet=24), "ipam.subnet", "24", "CIDR string"),
    (host_local(subnet="10.1.0.0/24", rangeStart="10.2.0.5"), "ipam.rangeStart", "'10.2.0.5'",
     "not in subnet 10.1.0.0/24"),
    (host_local(subnet="10.1.0.0/24", rangeEnd="10.1.1.5"), "ipam.rangeEnd", "'10.1.1.5'",
     "not in subnet"),
    (host_local(subnet="10.1.0.0/24", rangeStart="10.1.0.x"), "ipam.rangeStart", "'10.1.0.x'",
     "not an IP address"),
    (host_local(subnet="10.1.0.0/24", rangeStart="10.1.0.250", rangeEnd="10.1.0.20"),
     "ipam.rangeStart", "'10.1.0.250'", "is after rangeEnd 10.1.0.20"),
    # C04: a start past the defaulted end used to walk out of the subnet
    (host_local(subnet="10.41.0.0/24", rangeStart="10.41.0.255"), "ipam.rangeStart",
     "'10.41.0.255'", "broadcast address"),
    # C05: explicit network and broadcast addresses are rejected, not allocated
    (host_local(subnet="10.40.0.0/30", rangeStart="10.40.0.0"), "ipam.rangeStart",
     "'10.40.0.0'", "network address"),
    (host_local(subnet="10.40.0.0/30", rangeEnd="10.40.0.3"), "ipam.rangeEnd", "'10.40.0.3'",
     "broadcast address"),
    (host_local(subnet="10.1.0.0/24", gateway="10.9.0.1"), "ipam.gateway", "'10.9.0.1'",
     "not in subnet"),
    (host_local(subnet="10.1.0.0/24", gateway="10.1.0.255"), "ipam.gateway", "'10.1.0.255'",
     "broadcast"),
    (host_local(subnet="2001:db8::/64", rangeStart="10.1.0.2"), "ipam.rangeStart",
     "'10.1.0.2'", "not in subnet 2001:db8::/64"),
    (host_local(subnet="10.1.0.0/24", rangeStart="10.1.0.1", rangeEnd="10.1.0.1"),
     "ipam.rangeStart", "'10.1.0.1'", "only the gateway"),
    (host_local(subnet="10.1.0.0/24", routes=[{"gw": "10.1.0.1"}]), "ipam.routes[0].dst", None,
     "required"),
    (host_local(subnet="10.1.0.0/24", routes=[{"dst": "0.0.0.0"}]), "ipam.routes[0].dst",
     "'0.0.0.0'", "not a CIDR"),
    (host_local(subnet="10.1.0.0/24", routes=[{"dst": "10.2.0.1/16"}]), "ipam.routes[0].dst",
     "'10.2.0.1/16'", "host bits"),
    (host_local(subnet="10.1.0.0/24", routes=[{"dst": "::/0", "gw": "10.1.0.1"}]),
     "ipam.routes[0].gw", "'10.1.0.1'", "IPv4 but dst ::/0 is IPv6"),
    (host_local(subnet="10.1.0.0/24", routes=[{"dst": "0.0.0.0/0", "gw": "nope"}]),
     "ipam.routes[0].gw", "'nope'", "not an IP address"),
    (host_local(subnet="10.1.0.0/24", routes={"dst": "0.0.0.0/0"}), "ipam.routes",
     "{'dst': '0.0.0.0/0'}", "list"),
    (host_local(), "ipam.subnet", None, "ipam.subnet or ipam.ranges"),
    (host_local(rangeStart="10.1.0.2"), "ipam.subnet", None, "required when rangeStart"),
    (host_local(ranges=[[]]), "ipam.ranges[0]", "[]", "non-empty list"),
    (host_local(ranges=[[{"rangeStart": "10.1.0.2"}]]), "ipam.ranges[0][0].subnet", None,
     "required"),
    (host_local(ranges=[[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.255"}]]),
     "ipam.ranges[0][0].rangeEnd", "'10.1.0.255'", "broadcast"),
    (host_local(ranges=[[{"subnet": "10.1.0.0/24"}, {"subnet": "2001:db8::/64"}]]),
     "ipam.ranges[0]", "['10.1.0.0/24', '2001:db8::/64']", "mixes IPv4 and IPv6"),
    (host_local(ranges=[[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]),
     "ipam.ranges[0][1]", "'10.1.0.1-10.1.0.126'", "overlaps range 10.1.0.1-10.1.0.254"),
    (host_local(subnet="10.1.0.0/24", ranges=[[{"subnet": "10.1.0.128/25"}]]),
     "ipam.ranges[0]", "'10.1.0.129-10.1.0.254'", "overlaps range 10.1.0.1-10.1.0.254 of ipam"),
    (host_local(ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/16"}]]),
     "ipam.ranges[1]", "'10.1.0.1-10.1.255.254'", "overlaps range 10.1.0.1-10.1.0.254"),
    (host_local(ranges="10.1.0.0/24"), "ipam.ranges", "'10.1.0.0/24'", "list of range sets"),
    ({**host_local(subnet="10.1.0.0/24"), "dns": {"nameservers": ["1.1.1"]}},
     "dns.nameservers[0]", "'1.1.1'", "not an IP address"),
    ({**host_local(subnet="10.1.0.0/24"), "dns": {"search": "example.com"}}, "dns.search",
     "'example.com'", "list of strings"),
    ({**host_local(subnet="10.1.0.0/24"), "dns": {"domain": 5}}, "dns.domain", "5", "string"),
    ({**host_local(subnet="10.1.0.0/24"), "dns": ["1.1.1.1"]}, "dns", "['1.1.1.1']", "object"),
    ({"name": "lan", "type": "ptp", "ipam": {"type": 5}}, "ipam.type", "5", "non-empty"),
    ({"name": "fl", "type": "flannel", "delegate": {"name": "x"}}, "delegate.name", "'x'",
     "must not be set"),
    ({"name": "fl", "type": "flannel", "delegate": {"isGateway": "y"}}, "delegate.isGateway",
     "'y'", "true or false"),
    ({"name": "tu", "type": "tuning", "sysctl": {"kernel.pid_max": "9"}},
     "sysctl.kernel.pid_max", "'9'", "only net.*"),
]
# fmt: on


@pytest.mark.parametrize(("conf", "field", "shown", "reason"), BAD_CONFS)
def test_bad_conf_is_rejected_naming_field_and_value(conf, field, shown, reason):
    with pytest.raises(ConfError) as caught:
        validate(conf, WHERE)
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f'{WHERE}: field "{field}": ')
    assert reason in message
    if shown is not None:
        assert message.endswith(f"(value: {shown})")


@pytest.mark.parametrize(
    ("conf", "field", "reason"),
    [
        ({"type": "ptp"}, "name", "required"),
        ({"name": "lan"}, "type", "required"),
        ({"name": "lan", "type": "ptp"}, "ipam.type", "no L2 mode"),
        ({"name": "lan", "type": "ptp", "ipam": {}}, "ipam.type", "required"),
        ({"name": "lan", "type": "macvlan"}, "master", "required"),
        ({"name": "lan", "type": "ipvlan", "mode": "l3"}, "master", "required"),
    ],
)
def test_missing_required_field_is_named(conf, field, reason):
    with pytest.raises(ConfError) as caught:
        validate(conf, WHERE)
    assert caught.value.field == field
    assert f'field "{field}"' in str(caught.value) and reason in str(caught.value)


def test_bad_conf_message_reads_clearly():
    conf = host_local(subnet="10.1.0.0/24", rangeStart="10.1.0.250", rangeEnd="10.1.0.20")
    with pytest.raises(ConfError) as caught:
        validate(conf, WHERE)
    assert str(caught.value) == (
        'conf "/etc/rkt/net.d/10-lan.conf": field "ipam.rangeStart": 10.1.0.250 is after'
        " rangeEnd 10.1.0.20 (value: '10.1.0.250')"
    )


def test_a_conf_that_is_not_an_object_is_rejected():
    with pytest.raises(ConfError, match="must be a JSON object"):
        validate(["name", "lan"], WHERE)


# fmt: off
GOOD_CONFS = [
    *(netconf.conf for netconf in built_ins()),
    {"name": "lan", "type": "bridge"},
    {"name": "lan", "type": "bridge", "ipam": {}},
    {"name": "lan", "type": "bridge", "bridge": "rkt0", "isDefaultGateway": True,
     "ipMasq": True, "mtu": 9000, "hairpinMode": True,
     "ipam": {"type": "host-local", "subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10",
              "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254",
              "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.1"}]}},
    {"name": "mv", "type": "macvlan", "master": "eth0", "mode": "passthru",
     "ipam": {"type": "dhcp"}},
    {"name": "iv", "type": "ipvlan", "master": "eth0", "mode": "l3s", "ipMasq": True,
     "ipam": {"type": "host-local", "subnet": "10.2.0.0/16"}},
    {"name": "v6", "type": "ptp", "ipam": {"type": "host-local", "ranges": [
        [{"subnet": "10.3.0.0/24"}, {"subnet": "10.3.1.0/24"}],
        [{"subnet": "2001:db8:1::/64", "rangeEnd": "2001:db8:1::ffff:ffff:ffff:ffff"}]]}},
    {"name": "dns", "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.4.0.0/30"},
     "dns": {"nameservers": ["10.4.0.1", "2001:db8::53"], "domain": "pod",
             "search": ["pod"], "options": ["ndots:2"]}},
    {"name": "fl", "type": "flannel", "delegate": {"isDefaultGateway": True}},
    {"name": "tu", "type": "tuning", "sysctl": {"net.core.somaxconn": "512"}},
    # third-party plugins: only name and type are checked
    {"name": "third", "type": "cilium-cni", "mtu": "whatever", "ipam": "custom"},
    {"name": "a.b_c-1", "type": "x"},
]
# fmt: on


@pytest.mark.parametrize("conf", GOOD_CONFS)
def test_good_conf_is_accepted_unchanged(conf):
    assert validate(conf, WHERE) == conf


# --- host-local ranges -----------------------------------------------------------------------


def r(subnet: str, start: str, end: str, gateway: str) -> Range:
    return Range(IPNetwork(subnet), IPAddress(start), IPAddress(end), IPAddress(gateway))


# fmt: off
RANGE_CASES = [
    ({"subnet": "172.16.28.0/24"},
     [[r("172.16.28.0/24", "172.16.28.1", "172.16.28.254", "172.16.28.1")]]),
    ({"subnet": "10.30.0.0/30"}, [[r("10.30.0.0/30", "10.30.0.1", "10.30.0.2", "10.30.0.1")]]),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "gateway": "10.1.0.254"},
     [[r("10.1.0.0/24", "10.1.0.10", "10.1.0.254", "10.1.0.254")]]),
    ({"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.9"},
     [[r("10.1.0.0/24", "10.1.0.1", "10.1.0.9", "10.1.0.1")]]),
    ({"subnet": "2001:db8::/64"},
     [[r("2001:db8::/64", "2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8::1")]]),
    ({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.2.0.0/24"},
                                           {"subnet": "10.3.0.0/24"}]]},
     [[r("10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1")],
      [r("10.2.0.0/24", "10.2.0.1", "10.2.0.254", "10.2.0.1"),
       r("10.3.0.0/24", "10.3.0.1", "10.3.0.254", "10.3.0.1")]]),
    ({"Ranges": [[{"Subnet": "10.1.0.0/24", "RangeStart": "10.1.0.100"}]]},
     [[r("10.1.0.0/24", "10.1.0.100", "10.1.0.254", "10.1.0.1")]]),
    # same subnet, disjoint ranges: fine (overlap compares the ranges, not subnets)
    ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.9"},
                  {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10"}]]},
     [[r("10.1.0.0/24", "10.1.0.1", "10.1.0.9", "10.1.0.1"),
       r("10.1.0.0/24", "10.1.0.10", "10.1.0.254", "10.1.0.1")]]),
]
# fmt: on


@pytest.mark.parametrize(("ipam", "expected"), RANGE_CASES)
def test_host_local_ranges_fill_in_defaults(ipam, expected):
    assert host_local_ranges(ipam, WHERE) == expected


def test_host_local_range_renders_like_the_plugin():
    ((only,),) = host_local_ranges({"subnet": "10.30.0.0/30"}, WHERE)
    assert str(only) == "10.30.0.1-10.30.0.2"


def test_host_local_ranges_errors_name_the_ipam_field():
    with pytest.raises(ConfError) as caught:
        host_local_ranges({"subnet": "10.1.0.0/24", "rangeStart": "10.9.9.9"}, 'network "lan"')
    assert str(caught.value).startswith('network "lan": field "ipam.rangeStart": ')


# --- NetConf and built-ins -------------------------------------------------------------------


def test_built_ins_are_rkts_default_networks():
    default, restricted = built_ins()
    assert (default.name, default.sort_key, default.path) == ("default", "99-default.conf", None)
    assert default.type == "ptp" and default.ip_masq is True
    assert default.ipam == {
        "type": "host-local",
        "subnet": "172.16.28.0/24",
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert default.conf["cniVersion"] == "0.1.0"
    assert restricted.name == "default-restricted"
    assert restricted.sort_key == "99-default-restricted.conf"
    assert restricted.ip_masq is False
    assert restricted.ipam == {"type": "host-local", "subnet": "172.31.0.0/16"}
    assert restricted.mtu is None and restricted.dns == {}


def test_netconf_properties_read_the_conf():
    netconf = NetConf("a", "ptp", {"mtu": 1400, "dns": {"domain": "x"}}, "/d/a.conf", "a.conf")
    assert (netconf.mtu, netconf.dns, netconf.ip_masq, netconf.ipam) == (
        1400,
        {"domain": "x"},
        False,
        {},
    )


# --- loading a net.d dir ---------------------------------------------------------------------


def write(directory, name: str, conf: dict | str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(conf if isinstance(conf, str) else json.dumps(conf))
    return path


def ptp(name: str, subnet: str = "10.9.0.0/24") -> dict:
    return {"name": name, "type": "ptp", "ipam": {"type": "host-local", "subnet": subnet}}


def test_load_dir_reads_conf_files_in_byte_order(tmp_path):
    for file_name, net in [
        ("a.conf", "a"),
        ("Z01-z.conf", "z"),
        ("10-ten.conf", "ten"),
        ("_u.conf", "u"),
        ("99-n.conf", "n"),
        ("99-n-r.conf", "nr"),
    ]:
        write(tmp_path, file_name, ptp(net))
    confs, warnings = load_dir(str(tmp_path))
    assert [c.sort_key for c in confs] == [
        "10-ten.conf",
        "99-n-r.conf",
        "99-n.conf",
        "Z01-z.conf",
        "_u.conf",
        "a.conf",
    ]
    assert [c.name for c in confs] == ["ten", "nr", "n", "z", "u", "a"]
    assert confs[0].path == str(tmp_path / "10-ten.conf")
    assert warnings == []


def test_load_dir_skips_sub_dirs_and_other_suffixes(tmp_path):
    write(tmp_path, "net.json", ptp("json"))
    write(tmp_path, "net.conflist", ptp("list"))
    write(tmp_path, "net.conf.bak", ptp("bak"))
    (tmp_path / "dir.conf").mkdir()
    write(tmp_path / "dir.conf", "inner.conf", ptp("inner"))
    write(tmp_path, "real.conf", ptp("real"))
    confs, _warnings = load_dir(str(tmp_path))
    assert [c.name for c in confs] == ["real"]


def test_load_dir_of_a_missing_dir_is_empty(tmp_path):
    assert load_dir(str(tmp_path / "nope")) == ([], [])


def test_load_dir_ignores_a_later_file_reusing_a_name(tmp_path):
    first = write(tmp_path, "10-lan.conf", ptp("lan", "10.1.0.0/24"))
    later = write(tmp_path, "20-lan.conf", ptp("lan", "10.2.0.0/24"))
    confs, warnings = load_dir(str(tmp_path))
    assert [(c.name, c.path) for c in confs] == [("lan", first)]
    assert confs[0].ipam["subnet"] == "10.1.0.0/24"
    assert len(warnings) == 1
    assert '"lan"' in warnings[0] and first in warnings[0] and later in warnings[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "is not valid JSON"),
        ('["a list"]', "is not a JSON object"),
        ('{"name": "a", "name": "b", "type": "ptp"}', "given twice"),
        ('{"Name": "a", "name": "b", "type": "ptp"}', "given twice"),
        ('{"name": "bad one", "type": "ptp"}', "letters, digits"),
    ],
)
def test_a_malformed_file_anywhere_fails_naming_it(tmp_path, text, reason):
    write(tmp_path, "10-good.conf", ptp("good"))
    bad = write(tmp_path, "zz-unused.conf", text)
    with pytest.raises(ConfError) as caught:
        load_dir(str(tmp_path))
    assert str(caught.value).startswith(f'conf "{bad}"')
    assert reason in str(caught.value)


def test_available_lets_a_user_conf_override_a_built_in(tmp_path):
    path = write(tmp_path, "50-default.conf", ptp("default", "10.50.0.0/24"))
    write(tmp_path, "lan.conf", {"Name": "lan", "Type": "bridge"})
    networks, warnings = available(str(tmp_path))
    assert set(networks) == {"default", "default-restricted", "lan"}
    assert networks["default"].path == path and networks["default"].sort_key == "50-default.conf"
    assert networks["default-restricted"].path is None
    assert networks["lan"].conf == {"name": "lan", "type": "bridge"}
    assert warnings == []


def test_render_is_stable_indented_json_in_the_given_order():
    conf = {"name": "a", "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}}
    text = render(conf)
    assert text == render(dict(conf)) and text.endswith("}\n")
    assert text.splitlines()[1] == '  "name": "a",'
    assert list(json.loads(text)) == ["name", "type", "ipam"]


# --- file plans (the cni_conf module's logic; the module itself is tested in tests/kernel) ---


def move(src: str, dest: str) -> None:
    os.replace(src, dest)


def test_plan_then_apply_writes_the_file_and_a_second_plan_is_empty(tmp_path):
    conf_dir = str(tmp_path / "net.d")
    plan = plan_conf_file(conf_dir, "present", conf=ptp("lan"), ordinal=10)
    assert [c.action for c in plan.changes] == ["create"]
    assert not os.path.exists(conf_dir)
    apply_conf_file(plan, move)
    path = os.path.join(conf_dir, "10-lan.conf")
    assert json.loads(open(path).read()) == ptp("lan")
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert os.listdir(conf_dir) == ["10-lan.conf"]
    assert not plan_conf_file(conf_dir, "present", conf=ptp("lan"), ordinal="10").changed


def test_an_equivalent_hand_written_file_is_unchanged(tmp_path):
    write(
        tmp_path,
        "lan.conf",
        '{"IPAM": {"Subnet": "2001:DB8::/64", "type": "host-local"}, "Type": "ptp", "name": "lan"}',
    )
    conf = {"name": "lan", "type": "ptp", "ipam": {"type": "host-local", "subnet": "2001:db8::/64"}}
    os.chmod(tmp_path / "lan.conf", 0o644)
    assert not plan_conf_file(str(tmp_path), "present", conf=conf).changed


def test_a_mode_difference_alone_is_a_chmod(tmp_path):
    path = write(tmp_path, "lan.conf", render(ptp("lan")))
    os.chmod(path, 0o600)
    plan = plan_conf_file(str(tmp_path), "present", conf=ptp("lan"), mode="0644")
    assert [c.action for c in plan.changes] == ["chmod"]


@pytest.mark.parametrize(("mode", "expected"), [("0644", 0o644), ("600", 0o600), (420, 0o644)])
def test_parse_mode(mode, expected):
    assert parse_mode(mode) == expected


@pytest.mark.parametrize("mode", ["rw-r--r--", "0999", True, None, 0o17777])
def test_parse_mode_rejects_non_modes(mode):
    with pytest.raises(PodnetError, match="mode"):
        parse_mode(mode)


def test_absent_by_name_finds_every_file_defining_the_network(tmp_path):
    one = write(tmp_path, "10-lan.conf", ptp("lan"))
    two = write(tmp_path, "20-lan.conf", {"NAME": "lan", "type": "bridge"})
    write(tmp_path, "other.conf", ptp("other"))
    plan = plan_conf_file(str(tmp_path), "absent", name="lan")
    assert [(c.action, c.path) for c in plan.changes] == [("remove", one), ("remove", two)]


def test_present_rejects_a_name_defined_in_another_file(tmp_path):
    other = write(tmp_path, "10-lan.conf", ptp("lan"))
    with pytest.raises(ConfError) as caught:
        plan_conf_file(str(tmp_path), "present", conf=ptp("lan"), ordinal="20")
    assert other in str(caught.value) and str(tmp_path / "20-lan.conf") in str(caught.value)


@pytest.mark.parametrize(
    ("ordinal", "base"),
    [(None, "lan.conf"), ("", "lan.conf"), (5, "5-lan.conf"), ("Z01", "Z01-lan.conf")],
)
def test_file_name_comes_from_ordinal_and_name(tmp_path, ordinal, base):
    plan = plan_conf_file(str(tmp_path), "present", conf=ptp("lan"), ordinal=ordinal)
    assert plan.path == str(tmp_path / base)


@pytest.mark.parametrize("ordinal", ["../x", "a/b", ".hidden", True, 1.5])
def test_ordinal_must_be_a_file_name_prefix(tmp_path, ordinal):
    with pytest.raises(PodnetError, match="ordinal"):
        plan_conf_file(str(tmp_path), "present", conf=ptp("lan"), ordinal=ordinal)


@pytest.mark.parametrize("name", ["host", "none", "all"])
def test_names_of_net_modes_are_reserved(name):
    with pytest.raises(ConfError) as caught:
        validate(
            {"name": name, "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}},
            "conf",
        )
    assert 'field "name"' in str(caught.value) and "reserved" in str(caught.value)
