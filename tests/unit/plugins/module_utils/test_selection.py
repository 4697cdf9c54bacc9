"""Network selection: rkt's --net grammar, modes, the default-restricted rule, order, ifnames."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cni.plugins.module_utils._conf import NetConf, built_ins
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._selection import (
    Selection,
    parse_cni_args,
    parse_networks,
    select,
)

# --- grammar ---------------------------------------------------------------------------------

# fmt: off
PARSE_CASES = [
    (None, []),
    ([], []),
    ("default", [("default", "")]),
    ("a,b:IP=10.1.0.5", [("a", ""), ("b", "IP=10.1.0.5")]),
    ("all,net1:IP=1.2.3.4", [("all", ""), ("net1", "IP=1.2.3.4")]),
    (["net1:IP=1.2.3.4", "net2:IP=1.2.4.5"], [("net1", "IP=1.2.3.4"), ("net2", "IP=1.2.4.5")]),
    (["a,b", "c"], [("a", ""), ("b", ""), ("c", "")]),
    (["lan:IP=10.1.0.9;IgnoreUnknown=1"], [("lan", "IP=10.1.0.9;IgnoreUnknown=1")]),
    ([{"name": "lan"}], [("lan", "")]),
    ([{"name": "lan", "args": "IP=10.1.0.9"}], [("lan", "IP=10.1.0.9")]),
    ([{"name": "lan", "args": {"IP": "10.1.0.9", "IgnoreUnknown": 1}}],
     [("lan", "IP=10.1.0.9;IgnoreUnknown=1")]),
    ([{"name": "v6", "args": "IP=2001:db8::5"}], [("v6", "IP=2001:db8::5")]),
    (["default:x", "none:y"], [("default", "x"), ("none", "y")]),
]
# fmt: on


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES)
def test_parse_networks_accepts_rkt_strings_lists_and_dicts(value, expected):
    assert parse_networks(value) == expected


# fmt: off
PARSE_ERRORS = [
    ("", "netname must not be empty"),
    ("a,,b", "netname must not be empty"),
    (":IP=1", "netname must not be empty"),
    ([{"name": ""}], "netname must not be empty"),
    ("lan:IP=1:2", 'network "lan" provided with invalid arguments: [IP=1 2]'),
    ("a,a", 'found duplicate netname "a"'),
    (["a", "b,a:IP=1"], 'found duplicate netname "a"'),
    (["a", {"name": "a"}], 'found duplicate netname "a"'),
    ("all:x", 'arguments are not supported by special netname "all"'),
    (["host:IP=1"], 'arguments are not supported by special netname "host"'),
    ([{"name": "host", "args": {"K": "V"}}], 'arguments are not supported by special netname'),
    ([5], "must be a string NAME[:ARGS] or a dict"),
    ([{"name": "a", "ifname": "eth3"}], "unknown keys ifname"),
    ([{"name": "a", "args": ["IP=1"]}], 'must be a "K=V;K=V" string or a dict'),
    ([{"name": "a", "args": {"IP": "1;X=2"}}], 'must not contain ";" or "="'),
    ([{"name": "a", "args": {"I=P": "1"}}], 'must not contain ";" or "="'),
]
# fmt: on


@pytest.mark.parametrize(("value", "message"), PARSE_ERRORS)
def test_parse_networks_rejects_what_rkt_rejects(value, message):
    with pytest.raises(PodnetError) as caught:
        parse_networks(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", {}),
        ("IP=10.1.0.5", {"IP": "10.1.0.5"}),
        ("IP=10.1.0.5;IgnoreUnknown=1", {"IP": "10.1.0.5", "IgnoreUnknown": "1"}),
        ("K=", {"K": ""}),
    ],
)
def test_parse_cni_args_splits_pairs(args, expected):
    assert parse_cni_args(args) == expected


@pytest.mark.parametrize(
    ("args", "pair"), [("IP", "IP"), ("IP=1;", ""), ("A=1;B=2=3", "B=2=3"), (";", "")]
)
def test_parse_cni_args_needs_exactly_one_equals_per_pair(args, pair):
    with pytest.raises(PodnetError) as caught:
        parse_cni_args(args)
    assert str(caught.value) == f'ARGS: invalid pair "{pair}"'


# --- select ----------------------------------------------------------------------------------


def user(name: str, file_name: str) -> NetConf:
    conf = {"name": name, "type": "bridge"}
    return NetConf(name, "bridge", conf, f"/etc/rkt/net.d/{file_name}", file_name)


def nets(*confs: NetConf) -> dict[str, NetConf]:
    found = {conf.name: conf for conf in built_ins()}
    found.update({conf.name: conf for conf in confs})
    return found


AVAILABLE = nets(
    user("lan", "10-lan.conf"),
    user("bridge0", "bridge0.conf"),
    user("zed", "Z01-zed.conf"),
    user("under", "_under.conf"),
)


def chosen(selection: Selection) -> list[tuple[str, str, str]]:
    return [(s.conf.name, s.ifname, s.args) for s in selection.networks]


@pytest.mark.parametrize("requested", [[], None, [("default", "")]])
def test_no_networks_means_default_alone(requested):
    selection = select(requested, AVAILABLE)
    assert selection.mode == "contained"
    assert chosen(selection) == [("default", "eth0", "")]


def test_host_anywhere_means_host_mode_and_other_names_are_ignored():
    selection = select([("lan", ""), ("host", ""), ("missing", "")], AVAILABLE)
    assert (selection.mode, selection.networks) == ("host", [])


def test_none_means_loopback_only_without_a_not_found_check():
    selection = select([("missing", ""), ("none", "")], AVAILABLE)
    assert (selection.mode, selection.networks) == ("none", [])


def test_host_wins_over_none():
    assert select([("none", ""), ("host", "")], AVAILABLE).mode == "host"


def test_naming_networks_without_default_adds_default_restricted():
    selection = select([("lan", "IP=10.1.0.9")], AVAILABLE)
    assert chosen(selection) == [
        ("lan", "eth0", "IP=10.1.0.9"),
        ("default-restricted", "eth1", ""),
    ]


def test_default_restricted_can_be_left_out():
    selection = select([("lan", "")], AVAILABLE, add_restricted=False)
    assert chosen(selection) == [("lan", "eth0", "")]


def test_default_among_the_names_means_no_default_restricted():
    selection = select([("bridge0", ""), ("default", "")], AVAILABLE)
    assert chosen(selection) == [("default", "eth0", ""), ("bridge0", "eth1", "")]


def test_default_restricted_named_explicitly_is_not_added_twice():
    selection = select([("default-restricted", ""), ("lan", "")], AVAILABLE)
    assert [name for name, _ifname, _args in chosen(selection)] == ["lan", "default-restricted"]


def test_all_selects_every_network_including_both_built_ins_in_file_name_order():
    selection = select([("all", ""), ("lan", "IP=10.1.0.7")], AVAILABLE)
    assert chosen(selection) == [
        ("lan", "eth0", "IP=10.1.0.7"),
        ("default-restricted", "eth1", ""),
        ("default", "eth2", ""),
        ("zed", "eth3", ""),
        ("under", "eth4", ""),
        ("bridge0", "eth5", ""),
    ]


def test_order_is_byte_wise_by_file_name_not_by_request_order():
    selection = select([("bridge0", ""), ("under", ""), ("zed", ""), ("lan", "")], AVAILABLE)
    assert [(name, ifname) for name, ifname, _args in chosen(selection)] == [
        ("lan", "eth0"),
        ("default-restricted", "eth1"),
        ("zed", "eth2"),
        ("under", "eth3"),
        ("bridge0", "eth4"),
    ]


def test_an_overridden_built_in_sorts_by_its_user_file_name():
    available = nets(user("default", "00-default.conf"), user("lan", "10-lan.conf"))
    selection = select([("lan", ""), ("default", "")], available)
    assert [(s.conf.name, s.conf.path) for s in selection.networks] == [
        ("default", "/etc/rkt/net.d/00-default.conf"),
        ("lan", "/etc/rkt/net.d/10-lan.conf"),
    ]


def test_unknown_names_are_all_listed_in_one_error():
    with pytest.raises(PodnetError) as caught:
        select([("lan", ""), ("nope", ""), ("gone", "")], AVAILABLE)
    assert str(caught.value) == "networks not found: nope, gone"


def test_unknown_names_are_reported_with_all_too():
    with pytest.raises(PodnetError, match="networks not found: nope"):
        select([("all", ""), ("nope", "")], AVAILABLE)


def test_a_missing_default_restricted_is_reported():
    available = {"lan": user("lan", "10-lan.conf")}
    with pytest.raises(PodnetError, match="networks not found: default-restricted"):
        select([("lan", "")], available)
