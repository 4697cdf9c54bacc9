"""flannel: reading flanneld's subnet file and building the delegate conf from it."""

from __future__ import annotations

import pytest

from ansible_collections.podnet.cni.plugins.module_utils._conf import NetConf
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError
from ansible_collections.podnet.cni.plugins.module_utils._flannel import (
    SubnetEnv,
    delegate_conf,
    ipam_for,
    parse_subnet_env,
    read_subnet_env,
)

SUBNET_ENV = (
    "FLANNEL_NETWORK=10.244.0.0/16\n"
    "FLANNEL_SUBNET=10.244.3.1/24\n"
    "FLANNEL_MTU=1450\n"
    "FLANNEL_IPMASQ=true\n"
)
ENV = SubnetEnv(networks=("10.244.0.0/16",), subnet="10.244.3.0/24", mtu=1450, ip_masq=True)


def flannel(**conf) -> NetConf:
    return NetConf("overlay", "flannel", {"name": "overlay", "type": "flannel", **conf}, None, "a")


def test_subnet_file_is_parsed_and_the_subnet_loses_its_host_bits():
    assert parse_subnet_env(SUBNET_ENV, "/f", "w") == ENV


def test_network_list_is_split_and_deduplicated_and_ipmasq_is_only_true_for_true():
    text = SUBNET_ENV.replace("10.244.0.0/16", "10.244.0.0/16,10.245.0.0/16, 10.244.0.0/16")
    text = text.replace("IPMASQ=true", "IPMASQ=yes")
    env = parse_subnet_env(text, "/f", "w")
    assert env.networks == ("10.244.0.0/16", "10.245.0.0/16")
    assert env.ip_masq is False


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (["FLANNEL_MTU"], "FLANNEL_MTU"),
        (["FLANNEL_NETWORK", "FLANNEL_IPMASQ"], "FLANNEL_NETWORK, FLANNEL_IPMASQ"),
        (["FLANNEL_SUBNET"], "FLANNEL_SUBNET"),
    ],
)
def test_missing_keys_are_all_named_with_the_file(drop, named):
    text = "".join(line + "\n" for line in SUBNET_ENV.split() if line.split("=")[0] not in drop)
    with pytest.raises(ConfError) as caught:
        parse_subnet_env(text, "/run/flannel/subnet.env", 'network "overlay"')
    assert f"/run/flannel/subnet.env is missing {named}" in str(caught.value)
    assert 'network "overlay"' in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("FLANNEL_MTU", "big", "not an MTU"),
        ("FLANNEL_MTU", "20", "not an MTU"),
        ("FLANNEL_SUBNET", "10.244.3.300/24", "not a CIDR"),
        ("FLANNEL_NETWORK", "10.244.0.0", "not an IPv4 CIDR"),
    ],
)
def test_bad_values_name_the_key_and_the_value(key, value, reason):
    lines = [line for line in SUBNET_ENV.split() if not line.startswith(key + "=")]
    text = "\n".join([*lines, f"{key}={value}"])
    with pytest.raises(ConfError) as caught:
        parse_subnet_env(text, "/f", "w")
    assert f"{key}={value}" in str(caught.value) and reason in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / "subnet.env")
    with pytest.raises(ConfError) as caught:
        read_subnet_env(flannel(subnetFile=path))
    assert path in str(caught.value) and "No such file" in str(caught.value)


def test_default_delegate_is_a_gateway_bridge_on_the_flannel_subnet():
    delegate = delegate_conf(flannel(cniVersion="0.3.1"), ENV)
    assert delegate == {
        "cniVersion": "0.3.1",
        "name": "overlay",
        "type": "bridge",
        "ipMasq": False,
        "mtu": 1450,
        "isGateway": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.244.3.0/24",
            "routes": [{"dst": "10.244.0.0/16"}],
        },
    }


def test_delegate_settings_win_and_ipam_routes_are_kept_but_its_subnet_replaced():
    conf = flannel(
        delegate={"type": "ptp", "ipMasq": True, "mtu": 1400},
        ipam={"subnet": "10.9.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
    )
    delegate = delegate_conf(conf, ENV)
    assert delegate["type"] == "ptp" and "isGateway" not in delegate
    assert delegate["ipMasq"] is True and delegate["mtu"] == 1400
    assert delegate["ipam"] == {
        "type": "host-local",
        "subnet": "10.244.3.0/24",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.244.0.0/16"}],
    }
    assert conf.conf["delegate"] == {"type": "ptp", "ipMasq": True, "mtu": 1400}, "not mutated"


@pytest.mark.parametrize("kind", ["flannel", "nonesuch"])
def test_delegate_type_must_be_a_built_in_with_host_local(kind):
    with pytest.raises(ConfError) as caught:
        delegate_conf(flannel(delegate={"type": kind}), ENV)
    assert "delegate.type" in str(caught.value) and kind in str(caught.value)


def test_ipam_for_reads_the_file_and_keeps_leases_in_the_modules_data_dir(tmp_path):
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(SUBNET_ENV.replace("10.244.3.1/24", "10.244.3.1/30"))
    ipam = ipam_for(flannel(subnetFile=str(subnet_file)), str(tmp_path / "leases"))
    (lease,) = ipam.predict("pod", "eth0", [])
    assert lease.cidr == "10.244.3.2/30" and str(lease.gateway) == "10.244.3.1"
    assert ipam.saved() == {"ipam_type": "host-local", "data_dir": str(tmp_path / "leases")}


def test_an_address_from_an_older_flannel_subnet_is_not_asked_for(tmp_path):
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(SUBNET_ENV)
    ipam = ipam_for(flannel(subnetFile=str(subnet_file)), str(tmp_path))
    assert ipam.predict("pod", "eth0", ["10.244.9.7"])[0].cidr == "10.244.3.2/24"
    assert ipam.predict("pod", "eth0", ["10.244.3.9"])[0].cidr == "10.244.3.9/24"


def test_ipam_for_rejects_a_data_dir_that_is_not_a_path(tmp_path):
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(SUBNET_ENV)
    with pytest.raises(ConfError, match='field "dataDir"'):
        ipam_for(flannel(subnetFile=str(subnet_file), dataDir=5), str(tmp_path))
