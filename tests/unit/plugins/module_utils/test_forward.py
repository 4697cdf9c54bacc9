"""Port forward planning and rule rendering: parsing, validation, network choice, nft/iptables."""

from __future__ import annotations

import re

import pytest

from ansible_collections.podnet.cni.plugins.module_utils import _forward, _nat_iptables, _nat_nft
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._nat import PortForward

PORTS = [
    {"name": "http", "port": 80, "protocol": "tcp"},
    {"name": "dns", "port": 53, "protocol": "udp"},
]
RECORD = {
    "name": "web",
    "mode": "contained",
    "attachments": [
        {"network": "restricted", "address": "172.31.0.2/16", "subnet": "172.31.0.0/16"},
        {
            "network": "default",
            "address": "172.16.28.2/24",
            "subnet": "172.16.28.0/24",
            "masquerade": True,
            "host_ifname": "veth1",
        },
        {
            "network": "lan",
            "address": "10.22.0.2/24",
            "subnet": "10.22.0.0/24",
            "masquerade": True,
            "bridge": "rkt9",
            "host_ifname": "veth2",
        },
    ],
}
HTTP = PortForward("web", "tcp", None, 8080, "172.16.28.2", 80, "172.16.28.0/24")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("http:8080", _forward.Request("http", None, 8080)),
        ("http:0.0.0.0:8080", _forward.Request("http", None, 8080)),
        ("http:203.0.113.1:8080", _forward.Request("http", "203.0.113.1", 8080)),
        ({"name": "http", "host_port": "81"}, _forward.Request("http", None, 81)),
        (
            {"name": "http", "host_port": 81, "host_ip": "10.0.0.1"},
            _forward.Request("http", "10.0.0.1", 81),
        ),
    ],
)
def test_request_forms_parse(item, expected):
    assert _forward.parse_request(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("http", "name:[ip:]port format"),
        ("http:1:2:3", "name:[ip:]port format"),
        ("http::80", "name:[ip:]port format"),
        ("http:300.1.1.1:80", "is not a valid IP"),
        ("http:::1:80", "name:[ip:]port format"),
        ("http:0", "not a valid port number"),
        ("http:65536", "not a valid port number"),
        ("http:-1", "not a valid port number"),
        ({"name": "http"}, "needs name and host_port"),
        (42, "name:[ip:]port format"),
    ],
)
def test_bad_requests_name_the_value(item, message):
    with pytest.raises(PodnetError, match=re.escape(message)):
        _forward.parse_request(item)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([{"name": "Http", "port": 80}], "not a valid port name"),
        ([{"name": "http", "port": 80, "protocol": "sctp"}], "not tcp or udp"),
        ([{"name": "http", "port": 0}], "not a valid port number"),
        ([{"name": "http", "port": 80}, {"name": "http", "port": 81}], "more than once"),
        (["http"], "must be a dict"),
    ],
)
def test_bad_declared_ports(ports, message):
    with pytest.raises(PodnetError, match=message):
        _forward.parse_ports(ports)


def test_forwardable_is_first_masqueraded_else_last():
    assert _forward.forwardable(RECORD)["network"] == "default"
    plain = {"attachments": [dict(a, masquerade=False) for a in RECORD["attachments"]]}
    assert _forward.forwardable(plain)["network"] == "lan"


def test_plan_targets_the_forwardable_address_with_declared_protocol():
    planned = _forward.plan("web", RECORD, PORTS, ["http:8080", "dns:5353"], {})
    assert planned == [
        ("http", HTTP),
        ("dns", PortForward("web", "udp", None, 5353, "172.16.28.2", 53, "172.16.28.0/24")),
    ]


@pytest.mark.parametrize(
    ("requests", "others", "message"),
    [
        (["web:80"], {}, 'port name "web" is not among'),
        (["http:8080", "http:8080"], {}, "already mapped to pod port 80"),
        (["http:8080", "http:10.0.0.1:8080"], {}, "already mapped"),
        (["http:8080"], {"db": [HTTP]}, 'already forwarded to pod "db"'),
        (["http:10.0.0.1:8080"], {"db": [HTTP]}, 'already forwarded to pod "db"'),
    ],
)
def test_plan_refuses_unknown_names_and_clashes(requests, others, message):
    with pytest.raises(PodnetError, match=message):
        _forward.plan("web", RECORD, PORTS, requests, others)


def test_plan_allows_same_port_on_other_protocol_or_other_host_ip():
    others = {"db": [PortForward("db", "tcp", "10.0.0.2", 8080, "1.1.1.1", 80, "1.1.1.0/24")]}
    planned = _forward.plan("web", RECORD, PORTS, ["http:10.0.0.1:8080", "dns:8080"], others)
    assert len(planned) == 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"mode": "host", "attachments": []}, "host mode"),
        ({"mode": "none", "attachments": []}, "mode none"),
    ],
)
def test_plan_refuses_host_and_none_pods(record, message):
    with pytest.raises(PodnetError, match=message):
        _forward.plan("web", record, PORTS, ["http:8080"], {})


def test_localnet_goes_on_the_bridge_or_the_ptp_veth():
    assert _forward.localnet_ifnames(RECORD["attachments"][1]) == ["veth1"]
    assert _forward.localnet_ifnames(RECORD["attachments"][2]) == ["rkt9"]


# nftables


def test_nft_builds_the_whole_table_when_absent():
    script = _nat_nft.plan_forwards(None, "web", [HTTP])
    assert script[0] == "add table inet podnet_forward"
    assert (
        "add element inet podnet_forward fwd_any "
        '{ tcp . 8080 comment "pod=web" : 172.16.28.2 . 80 }' in script
    )
    assert (
        "add element inet podnet_forward fwd_snat "
        '{ 172.16.28.2 . tcp . 80 comment "pod=web" : jump fsnat_ac101c00_24 }' in script
    )
    assert (
        "add rule inet podnet_forward fsnat_ac101c00_24 ip saddr 127.0.0.1/32 masquerade" in script
    )
    assert _nat_nft.plan_forwards(None, "web", []) == []


def _sound(dnat: dict, snat: dict) -> _nat_nft.ForwardTable:
    chains = {_nat_nft.snat_chain(subnet) for subnet, _pod in snat.values()}
    return _nat_nft.ForwardTable(dnat=dnat, snat=snat, chains=chains)


def test_nft_changes_only_elements_and_removes_by_tag():
    state = _sound(
        {
            (None, "tcp", 8080): ("172.16.28.2", 80, "web"),
            ("10.0.0.1", "udp", 53): ("172.16.28.3", 53, "db"),
        },
        {
            ("172.16.28.2", "tcp", 80): ("172.16.28.0/24", "web"),
            ("172.16.28.3", "udp", 53): ("172.16.28.0/24", "db"),
        },
    )
    assert _nat_nft.plan_forwards(state, "web", [HTTP]) == []
    moved = _nat_nft.plan_forwards(
        state, "web", [HTTP.__class__(**{**HTTP.__dict__, "host_port": 8081})]
    )
    assert moved == [
        "delete element inet podnet_forward fwd_any { tcp . 8080 }",
        'add element inet podnet_forward fwd_any { tcp . 8081 comment "pod=web" : '
        "172.16.28.2 . 80 }",
    ]
    assert _nat_nft.plan_forwards(state, "web", []) == [
        "delete element inet podnet_forward fwd_any { tcp . 8080 }",
        "delete element inet podnet_forward fwd_snat { 172.16.28.2 . tcp . 80 }",
    ]
    only_db = _sound(
        {("10.0.0.1", "udp", 53): ("172.16.28.3", 53, "db")},
        {("172.16.28.3", "udp", 53): ("172.16.28.0/24", "db")},
    )
    assert _nat_nft.plan_forwards(only_db, "db", []) == ["delete table inet podnet_forward"]


def test_nft_replaces_a_stale_element_of_another_pod_on_the_wanted_key():
    state = _sound(
        {(None, "tcp", 8080): ("172.16.28.9", 80, "gone")},
        {("172.16.28.9", "tcp", 80): ("172.16.28.0/24", "gone")},
    )
    script = _nat_nft.plan_forwards(state, "web", [HTTP])
    assert script[0] == "delete element inet podnet_forward fwd_any { tcp . 8080 }"
    assert any("pod=web" in line for line in script)


def test_nft_drift_rebuilds_keeping_other_pods():
    state = _sound(
        {(None, "tcp", 9090): ("172.16.28.3", 80, "db")},
        {("172.16.28.3", "tcp", 80): ("172.16.28.0/24", "db")},
    )
    state.drift.append('chain "forward_dnat" does not hold the expected rules')
    script = _nat_nft.plan_forwards(state, "web", [HTTP])
    assert script[:2] == ["add table inet podnet_forward", "delete table inet podnet_forward"]
    assert any("tcp . 9090" in line and "pod=db" in line for line in script)
    assert any("tcp . 8080" in line and "pod=web" in line for line in script)


# iptables


def test_iptables_plans_chains_jumps_and_rules_then_drops_them():
    table = _nat_iptables.parse_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    lines = _nat_iptables.plan_forwards(table, "web", [HTTP])
    assert lines[:2] == [":PODNET-FWD-DNAT - [0:0]", ":PODNET-FWD-SNAT - [0:0]"]
    assert (
        '-A PODNET-FWD-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "forward pod: '
        '\\"web\\"" -j DNAT --to-destination 172.16.28.2:80' in lines
    )
    assert sum(line.startswith("-I ") for line in lines) == 3
    text = (
        "*nat\n"
        + "\n".join(line.replace("-I ", "-A ") for line in lines if not line.startswith(":"))
        + "\n:PODNET-FWD-DNAT - [0:0]\n:PODNET-FWD-SNAT - [0:0]\nCOMMIT\n"
    )
    built = _nat_iptables.parse_save(text)
    assert _nat_iptables.plan_forwards(built, "web", [HTTP]) == []
    assert _nat_iptables.forward_records(built) == [HTTP]
    dropped = _nat_iptables.plan_forwards(built, "web", [])
    assert dropped[-4:] == [
        "-F PODNET-FWD-DNAT",
        "-X PODNET-FWD-DNAT",
        "-F PODNET-FWD-SNAT",
        "-X PODNET-FWD-SNAT",
    ]
