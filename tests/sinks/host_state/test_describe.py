"""The fold's hook for what hosts say about themselves: DHCP fingerprints, advertised services,
names by source, SNMP, and the device type as a fact with history."""

from __future__ import annotations

from schemas import Advertised, ChangeKind, DhcpRequest, LldpNeighbour, SnmpInterface, SnmpSystem
from sinks.host_state import HostBook, PresenceConfig
from tests.factories import host_annotated, host_seen

MAC = "3c:d9:2b:00:00:17"


def book() -> HostBook:
    return HostBook(PresenceConfig())


def test_a_dhcp_clients_options_become_facts_and_its_name_ranks_below_the_lease() -> None:
    b = book()
    dhcp = DhcpRequest(message="discover", hostname="Pixel-7", vendor_class="android-dhcp-13",
                       parameters=[1, 3, 6, 15, 26, 28, 51, 58, 59, 43])
    folded = b.fold([host_seen(None, MAC, source="passive", evidence="dhcp-discover", hostname="Pixel-7",
                               dhcp=dhcp, t=0)])
    [new] = folded.changed
    assert new.kind is ChangeKind.NEW
    host = new.host
    assert (host.dhcp_fingerprint, host.dhcp_vendor_class) == (
        "1,3,6,15,26,28,51,58,59,43", "android-dhcp-13")
    assert (host.hostname, host.names) == ("Pixel-7", {"passive": "Pixel-7"})
    assert (host.device_type, host.device_type_confidence) == ("phone", 10)
    assert host.device_type_reasons == ["DHCP client of Android", "named like a phone or tablet"]
    # A DNS name outranks what the device calls itself; every name stays, by source.
    [changed] = b.fold([host_annotated("192.168.1.77", MAC, source="dns", hostname="pixel.lan", t=5)]).changed
    assert changed.host.hostname == "pixel.lan"
    assert changed.host.names == {"passive": "Pixel-7", "dns": "pixel.lan"}


def test_advertised_services_are_the_union_of_every_sources_latest_list() -> None:
    b = book()
    b.fold([host_annotated("198.18.0.23", MAC, source="mdns", hostname="printer.local",
                           advertised=[Advertised(type="_ipp._tcp", name="Lab LaserJet", port=631)],
                           model="HP LaserJet Pro M404dn", manufacturer="HP", t=0)])
    b.fold([host_annotated("198.18.0.23", MAC, source="ssdp",
                           advertised=[Advertised(type="urn:schemas-upnp-org:device:Printer:1")], t=1)])
    record = b.hosts[MAC].record
    assert record.advertised == ["_ipp._tcp", "urn:schemas-upnp-org:device:Printer:1"]
    assert (record.model, record.manufacturer, record.device_type) == (
        "HP LaserJet Pro M404dn", "HP", "printer")
    # mDNS now announces nothing more than IPP Everywhere: its list replaces its old one.
    [changed] = b.fold([host_annotated("198.18.0.23", MAC, source="mdns",
                                       advertised=[Advertised(type="_ipps._tcp")], t=2)]).changed
    assert record.advertised == ["_ipps._tcp", "urn:schemas-upnp-org:device:Printer:1"]
    assert [c.field for c in changed.changes] == ["advertised"]      # still a printer: no device_type change


def test_the_device_type_changes_with_the_evidence_and_is_history() -> None:
    b = book()
    first = b.fold([host_seen("198.18.0.30", "00:14:22:00:00:30", t=0)])
    assert first.changed[0].host.device_type == "unknown"
    first = b.fold([host_annotated("198.18.0.30", "00:14:22:00:00:30", source="oui", vendor="Dell Inc.",
                                   t=1)])
    assert first.changed[0].host.device_type == "computer"          # a Dell NIC, weakly
    folded = b.fold([host_annotated("198.18.0.30", "00:14:22:00:00:30", source="ssdp",
                                    advertised=[Advertised(type="urn:schemas-upnp-org:device:MediaRenderer:1")],
                                    t=10)])
    [changed] = folded.changed
    by_field = {c.field: (c.old, c.new) for c in changed.changes}
    assert by_field["device_type"] == ("computer", "media")
    rows = [(r.field, r.old, r.new, r.source) for r in folded.history if r.field == "device_type"]
    assert rows == [("device_type", "computer", "media", "ssdp")]
    assert changed.host.device_type_reasons[0] == "a UPnP/DLNA media renderer"


def test_snmp_facts_interfaces_and_lldp_neighbours() -> None:
    b = book()
    snmp = SnmpSystem(sys_name="sw1.lab.test", sys_descr="Cisco IOS Software, C2960X Software",
                      sys_object_id="1.3.6.1.4.1.9.1.1208",
                      interfaces=[SnmpInterface(index=1, name="Gi1/0/1", mac="00:00:0c:00:00:01", type=6)],
                      neighbours=[LldpNeighbour(local_port="3", chassis_id="00:14:22:00:00:1a",
                                                port_id="eth0", system_name="desktop")])
    [new] = b.fold([host_annotated("198.18.0.28", "00:00:0c:00:00:1c", source="snmp", hostname="sw1.lab.test",
                                   snmp=snmp, t=0)]).changed
    host = new.host
    assert host.interfaces == ["Gi1/0/1 00:00:0c:00:00:01"]
    assert host.neighbours == ["port 3: desktop port eth0 (00:14:22:00:00:1a)"]
    assert (host.sys_object_id, host.device_type, host.names) == (
        "1.3.6.1.4.1.9.1.1208", "switch", {"snmp": "sw1.lab.test"})


def test_hostname_sources_rank_dns_lease_dhcp_client_snmp_mdns_netbios_ssdp() -> None:
    b = book()
    order = ["ssdp", "netbios", "mdns", "snmp", "passive", "dhcp", "dns"]
    shown = []
    for t, source in enumerate(order):
        b.fold([host_annotated("198.18.0.40", MAC, source=source, hostname=f"by-{source}", t=t)])
        shown.append(b.hosts[MAC].record.hostname)
    assert shown == [f"by-{s}" for s in order]
