"""Device type rules (sinks/host_state/device_types.yaml): every rule, on evidence that shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import HostRecord
from sinks.host_state.device_type import (
    Evidence,
    RulesError,
    classify,
    classify_record,
    default_rules,
    load_rules,
)

# rule id -> evidence that a device of that kind shows (the rule alone decides it).
CASES: dict[str, Evidence] = {
    "print-service": Evidence(advertised=("_ipp._tcp",)),
    "upnp-printer": Evidence(advertised=("urn:schemas-upnp-org:device:Printer:1",)),
    "jetdirect-port": Evidence(open_ports=("tcp/9100",)),
    "printer-model": Evidence(model="HP Color LaserJet MFP M479fdw"),
    "printer-vendor": Evidence(vendor="Brother Industries, LTD."),
    "hp-printer-oid": Evidence(sys_object_id="1.3.6.1.4.1.11.2.3.9.1"),
    "printer-sysdescr": Evidence(sys_descr="HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153"),
    "nas-model": Evidence(model="DS920+"),
    "nas-vendor": Evidence(vendor="Synology Incorporated"),
    "nas-snmp": Evidence(sys_object_id="1.3.6.1.4.1.6574.1"),
    "time-machine": Evidence(advertised=("_adisk._tcp",)),
    "afp-share": Evidence(advertised=("_afpovertcp._tcp",)),
    "smb-share": Evidence(advertised=("_smb._tcp",)),
    "nfs-port": Evidence(open_ports=("tcp/2049",)),
    "googlecast": Evidence(advertised=("_googlecast._tcp",)),
    "airplay": Evidence(advertised=("_airplay._tcp",)),
    "raop": Evidence(advertised=("_raop._tcp",)),
    "speaker-service": Evidence(advertised=("_spotify-connect._tcp",)),
    "upnp-renderer": Evidence(advertised=("urn:schemas-upnp-org:device:MediaRenderer:1",)),
    "upnp-media-server": Evidence(advertised=("urn:schemas-upnp-org:device:MediaServer:1",)),
    "roku": Evidence(advertised=("roku:ecp",)),
    "media-model": Evidence(model="Chromecast Ultra"),
    "media-vendor": Evidence(vendor="Sonos, Inc."),
    "android-dhcp": Evidence(dhcp_vendor_class="android-dhcp-13"),
    "apple-mobile": Evidence(advertised=("_apple-mobdev2._tcp",)),
    "phone-model": Evidence(model="iPhone14,2"),
    "phone-name": Evidence(names=("Annas-iPhone",)),
    "workstation": Evidence(advertised=("_workstation._tcp",)),
    "windows-dhcp": Evidence(dhcp_vendor_class="MSFT 5.0"),
    "mac-model": Evidence(model="MacBookPro18,3"),
    "windows-name": Evidence(names=("DESKTOP-4F7K2QX",)),
    "windows-os": Evidence(os_hint="Windows 10"),
    "rdp-port": Evidence(open_ports=("tcp/3389",)),
    "netbios-workgroup": Evidence(workgroup="WORKGROUP"),
    "pc-vendor": Evidence(vendor="Dell Inc."),
    "server-services": Evidence(services=("tcp/5432 postgresql PostgreSQL DB",)),
    "linux-ssh": Evidence(services=("tcp/22 ssh OpenSSH 9.2p1",), os_hint="Debian"),
    "web-server": Evidence(services=("tcp/80 http nginx 1.22.1",)),
    "net-snmp-linux": Evidence(sys_object_id="1.3.6.1.4.1.8072.3.2.10"),
    "windows-server": Evidence(os_hint="Windows Server 2022"),
    "dns-server": Evidence(services=("tcp/53 domain dnsmasq 2.89",)),
    "router-advertisements": Evidence(advertised=("ndp-router",)),
    "dhcp-server": Evidence(advertised=("dhcp-server",)),
    "upnp-gateway": Evidence(advertised=("urn:schemas-upnp-org:device:InternetGatewayDevice:1",)),
    "router-os": Evidence(sys_descr="RouterOS RB4011iGS+"),
    "router-vendor": Evidence(vendor="Routerboard.com"),
    "switch-os": Evidence(sys_descr="Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M)"),
    "cisco-vendor": Evidence(vendor="Cisco Systems, Inc"),
    "lldp-neighbours": Evidence(neighbours=("port 3: desktop port eth0",), sys_object_id="1.3.6.1.4.1.9"),
    "access-point": Evidence(model="UniFi AP-AC-Pro"),
    "ap-vendor": Evidence(vendor="Ruckus Wireless"),
    "proxmox-web": Evidence(open_ports=("tcp/8006",)),
    "esxi": Evidence(sys_descr="VMware ESXi 8.0.2 build-22380479 VMware, Inc. x86_64"),
    "hyper-v": Evidence(os_hint="Microsoft Hyper-V Server 2019"),
    "virtual-nic": Evidence(mac="bc:24:11:5a:00:01"),
    "proxmox-guest": Evidence(vm_name="web01"),
    "rtsp-port": Evidence(open_ports=("tcp/554",)),
    "camera-service": Evidence(advertised=("_axis-video._tcp",)),
    "camera-vendor": Evidence(vendor="Hangzhou Hikvision Digital Technology Co.,Ltd."),
    "camera-model": Evidence(model="DS-2CD2143G2-I"),
    "homekit": Evidence(advertised=("_hap._tcp",)),
    "esphome": Evidence(advertised=("_esphomelib._tcp",)),
    "iot-protocols": Evidence(advertised=("_matter._tcp",)),
    "iot-upnp": Evidence(advertised=("urn:Belkin:device:controllee:1",)),
    "iot-vendor": Evidence(vendor="Espressif Inc."),
    "busybox-dhcp": Evidence(dhcp_vendor_class="udhcp 1.35.0"),
    "raspberry-pi": Evidence(vendor="Raspberry Pi Trading Ltd"),
}


def test_every_rule_has_a_case() -> None:
    assert sorted(r.id for r in default_rules().rules) == sorted(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule(rule_id: str) -> None:
    rule = next(r for r in default_rules().rules if r.id == rule_id)
    evidence = CASES[rule_id]
    assert rule.holds(evidence)
    found = classify(evidence)
    assert found.type == rule.type
    assert found.confidence == min(10, rule.score)
    assert found.reasons[0] == rule.reason
    # The rule does not fire on nothing.
    assert not rule.holds(Evidence())


def test_evidence_adds_up_and_the_runner_up_is_named() -> None:
    # A Synology NAS that also answers NetBIOS in a workgroup.
    found = classify(Evidence(vendor="Synology Incorporated", model="DS920+", advertised=(
        "_adisk._tcp", "_smb._tcp", "_http._tcp"), workgroup="LAB"))
    assert (found.type, found.confidence) == ("nas", 10)
    assert found.reasons[0] == "a NAS model"
    assert found.reasons[-1] == "less likely computer: has a NetBIOS name in a workgroup"


def test_a_vm_running_a_database_is_a_virtual_machine() -> None:
    found = classify(Evidence(mac="bc:24:11:00:00:10", services=("tcp/3306 mysql MariaDB 10.11.6",)))
    assert found.type == "virtual_machine"


def test_nothing_known_is_unknown() -> None:
    found = classify(Evidence(mac="02:1a:5c:00:00:fa"))
    assert (found.type, found.confidence, found.reasons) == ("unknown", 0, ())


def test_a_record_gives_its_evidence_names_included() -> None:
    record = HostRecord(host_key="x", hostname="DESKTOP-4F7K2QX", names={"netbios": "DESKTOP-4F7K2QX"},
                        advertised=["_smb._tcp"], vendor="Intel Corporate")
    evidence = Evidence.of(record)
    assert evidence.names == ("DESKTOP-4F7K2QX",) and evidence.advertised == ("_smb._tcp",)
    assert classify_record(record).type == "computer"


@pytest.mark.parametrize(("text", "message"), [
    ("types: [printer]\nrules:\n  - {id: a, type: tv, when: {model: x}}\n",
     "rule a: type 'tv' is not one of"),
    ("types: [printer]\nrules:\n  - {id: a, type: printer, when: {colour: x}}\n",
     "rule a: unknown field colour"),
    ("types: [printer]\nrules:\n  - {id: a, type: printer, when: {model: '('}}\n",
     "rule a: model: bad regex"),
    ("types: [printer]\nrules:\n  - {id: a, type: printer}\n", "rule a: no condition"),
    ("types: [printer]\nrules:\n  - {id: a, type: printer, when: {model: x}}\n"
     "  - {id: a, type: printer, when: {model: y}}\n", "rule a: id used twice"),
])
def test_a_bad_rules_file_names_the_rule(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=message):
        load_rules(path)
