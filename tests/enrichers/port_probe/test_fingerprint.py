"""The fingerprint rules against a table of real-world banners (written from public knowledge)."""

from __future__ import annotations

import pytest

from enrichers.port_probe.fingerprint import (
    RuleError,
    RuleSet,
    default_rules,
    escape_banner,
    expand,
    load_nmap_probes,
)

H = "HTTP/1.1 200 OK\r\n"

# (port, banner, service, product, version, os_hint)
BANNERS: list[tuple[int, bytes | str, str | None, str | None, str | None, str | None]] = [
    # SSH
    (22, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "ssh", "OpenSSH", "9.2p1", "Debian 12"),
    (22, "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u3\r\n", "ssh", "OpenSSH", "8.4p1", "Debian 11"),
    (22, "SSH-2.0-OpenSSH_7.9p1 Debian-10+deb10u2\r\n", "ssh", "OpenSSH", "7.9p1", "Debian 10"),
    (22, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "ssh", "OpenSSH", "9.2p1", "Debian 12"),
    (22, "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.5\r\n", "ssh", "OpenSSH", "8.9p1", "Ubuntu 22.04"),
    (22, "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5\r\n", "ssh", "OpenSSH", "8.2p1", "Ubuntu 20.04"),
    (22, "SSH-2.0-OpenSSH_7.6p1 Ubuntu-4ubuntu0.7\r\n", "ssh", "OpenSSH", "7.6p1", "Ubuntu 18.04"),
    (22, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n", "ssh", "OpenSSH", "9.6p1", "Ubuntu 24.04"),
    (22, "SSH-2.0-OpenSSH_7.4\r\n", "ssh", "OpenSSH", "7.4", None),
    (22, "SSH-2.0-OpenSSH_9.7\r\n", "ssh", "OpenSSH", "9.7", None),
    (22, "SSH-2.0-OpenSSH_8.4p1 Raspbian-5+deb11u1\r\n", "ssh", "OpenSSH", "8.4p1", "Debian 11"),
    (22, "SSH-2.0-OpenSSH_for_Windows_8.1\r\n", "ssh", "OpenSSH for Windows", "8.1", "Windows"),
    (22, "SSH-2.0-OpenSSH_9.3 FreeBSD-20230316\r\n", "ssh", "OpenSSH", "9.3", "FreeBSD"),
    (22, "SSH-2.0-dropbear_2022.83\r\n", "ssh", "Dropbear sshd", "2022.83", "Linux"),
    (22, "SSH-2.0-dropbear_2019.78\r\n", "ssh", "Dropbear sshd", "2019.78", "Linux"),
    (2222, "SSH-2.0-dropbear\r\n", "ssh", "Dropbear sshd", None, "Linux"),
    (22, "SSH-2.0-ROSSSH\r\n", "ssh", "MikroTik RouterOS sshd", None, "MikroTik RouterOS"),
    (22, "SSH-2.0-Cisco-1.25\r\n", "ssh", "Cisco SSH", "1.25", "Cisco IOS"),
    (22, "SSH-2.0-libssh_0.9.6\r\n", "ssh", "libssh server", "0.9.6", None),
    (22, "SSH-2.0-RomSShell_4.62\r\n", "ssh", "Allegro RomSShell sshd", "4.62", None),
    (22, "SSH-2.0-Go\r\n", "ssh", "Golang x/crypto/ssh server", None, None),
    # FTP
    (21, "220 (vsFTPd 3.0.3)\r\n", "ftp", "vsftpd", "3.0.3", "Unix"),
    (21, "220 (vsFTPd 2.3.4)\r\n", "ftp", "vsftpd", "2.3.4", "Unix"),
    (21, "220 ProFTPD 1.3.5e Server (Debian) [::ffff:10.0.0.5]\r\n", "ftp", "ProFTPD", "1.3.5e", "Debian"),
    (21, "220 ProFTPD Server (ProFTPD Default Installation) [10.0.0.5]\r\n", "ftp", "ProFTPD", None, None),
    (21, "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n", "ftp", "Pure-FTPd", None, None),
    (21, "220-FileZilla Server 1.7.3\r\n", "ftp", "FileZilla ftpd", "1.7.3", "Windows"),
    (21, "220 Microsoft FTP Service\r\n", "ftp", "Microsoft ftpd", None, "Windows"),
    (21, "220 JD FTP Server Ready\r\n", "ftp", "HP JetDirect ftpd", None, None),
    (21, "220 DiskStation FTP server ready.\r\n", "ftp", "Synology DiskStation NAS ftpd", None,
     "Synology DSM"),
    (21, "220 MikroTik FTP server (MikroTik 6.49.10) ready\r\n", "ftp", "MikroTik RouterOS ftpd", "6.49.10",
     "MikroTik RouterOS"),
    # Mail
    (25, "220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n", "smtp", "Postfix smtpd", None, "Debian"),
    (25, "220 mx.example.org ESMTP Postfix (Ubuntu)\r\n", "smtp", "Postfix smtpd", None, "Ubuntu"),
    (25, "220 mail.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 10:00:00 +0000\r\n", "smtp", "Exim smtpd",
     "4.96", None),
    (25, "220 mx.example.com ESMTP Sendmail 8.15.2/8.15.2; Mon, 1 Jan 2024\r\n", "smtp", "Sendmail",
     "8.15.2", None),
    (25, "220 EXCH01.corp.local Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024\r\n", "smtp",
     "Microsoft Exchange smtpd", None, "Windows"),
    (25, "220 mail.example.org ESMTP OpenSMTPD\r\n", "smtp", "OpenSMTPD", None, None),
    (110, "+OK Dovecot (Debian) ready.\r\n", "pop3", "Dovecot pop3d", None, "Debian"),
    (143, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] "
          "Dovecot (Ubuntu) ready.\r\n", "imap", "Dovecot imapd", None, "Ubuntu"),
    # Databases and brokers
    (3306, b"Y\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x08\x00\x00\x00abcdefgh\x00", "mysql",
     "MariaDB", "10.11.6", "Debian 12"),
    (3306, b"Z\x00\x00\x00\x0a11.4.2-MariaDB-ubu2404\x00\x08\x00\x00\x00", "mysql", "MariaDB", "11.4.2",
     None),
    (3306, b"J\x00\x00\x00\x0a8.0.36-0ubuntu0.22.04.1\x00\x0b\x00\x00\x00", "mysql", "MySQL", "8.0.36",
     "Ubuntu 22.04"),
    (3306, b"J\x00\x00\x00\x0a5.7.44\x00\x0b\x00\x00\x00", "mysql", "MySQL", "5.7.44", None),
    (3306, b"E\x00\x00\x00\xffj\x04Host '10.0.0.9' is not allowed to connect to this MariaDB server", "mysql",
     "MariaDB", None, None),
    (5432, b"PG-SSL:N\nE\x00\x00\x00\x5eSFATAL\x00VFATAL\x00C28000\x00Mno pg_hba.conf entry\x00Fauth.c\x00"
           b"L543\x00RClientAuthentication\x00\x00", "postgresql", "PostgreSQL DB", None, None),
    (5432, b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd", "postgresql", "PostgreSQL DB", None, None),
    (5432, b"PG-SSL:N\nR\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1eserver_version\x00"
           b"15.8 (Debian 15.8-0+deb12u1)\x00Z\x00\x00\x00\x05I", "postgresql", "PostgreSQL DB", "15.8",
     "Debian 12"),
    (6379, "$500\r\n# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux 6.1.0 x86_64\r\n",
     "redis", "Redis key-value store", "7.0.15", "Linux"),
    (6379, "-NOAUTH Authentication required.\r\n", "redis", "Redis key-value store", None, None),
    (6379, "-DENIED Redis is running in protected mode because protected mode is enabled\r\n", "redis",
     "Redis key-value store", None, None),
    (1883, b" \x02\x00\x00\x90\x03\x00\x01\x001-\x00\x13$SYS/broker/versionmosquitto version 2.0.11",
     "mqtt", "Mosquitto", "2.0.11", None),
    (1883, b" \x02\x00\x05", "mqtt", "MQTT broker", None, None),
    (5672, b"\x01\x00\x00\x00\x00\x01\xf4\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\xcf\x0ccapabilitiesF\x00\x00"
           b"\x00\x00\x07productS\x00\x00\x00\x08RabbitMQ\x07versionS\x00\x00\x00\x063.12.1\xce", "amqp",
     "RabbitMQ", "3.12.1", None),
    (27017, b"\x10\x01\x00\x00\x02version\x00\x06\x00\x00\x007.0.4\x00\x02gitVersion\x00", "mongodb",
     "MongoDB", "7.0.4", None),
    (1433, b"MSSQL-PRELOGIN version=15.0.2000.5\n\x04\x01", "ms-sql-s", "Microsoft SQL Server", "15.0.2000",
     "Windows"),
    (11211, "VERSION 1.6.21\r\n", "memcached", "Memcached", "1.6.21", None),
    (8086, "HTTP/1.1 204 No Content\r\nX-Influxdb-Build: OSS\r\nX-Influxdb-Version: v2.7.5\r\n\r\n", "http",
     "InfluxDB", "2.7.5", None),
    (5900, "RFB 003.008\n", "vnc", "VNC", None, None),
    # Web servers
    (80, H + "Server: nginx/1.22.1\r\n\r\n", "http", "nginx", "1.22.1", None),
    (80, H + "Server: nginx\r\n\r\n", "http", "nginx", None, None),
    (80, H + "Server: Apache/2.4.57 (Debian)\r\n\r\n", "http", "Apache httpd", "2.4.57", "Debian"),
    (80, H + "Server: Apache/2.4.52 (Ubuntu)\r\n\r\n", "http", "Apache httpd", "2.4.52", "Ubuntu"),
    (80, H + "Server: Apache/2.4.6 (CentOS) OpenSSL/1.0.2k-fips\r\n\r\n", "http", "Apache httpd", "2.4.6",
     "CentOS"),
    (80, H + "Server: Apache/2.4.58 (Win64) OpenSSL/3.1.3 PHP/8.2.12\r\n\r\n", "http", "Apache httpd",
     "2.4.58", "Windows"),
    (80, H + "Server: Apache\r\n\r\n", "http", "Apache httpd", None, None),
    (80, H + "Server: Microsoft-IIS/10.0\r\n\r\n", "http", "Microsoft IIS httpd", "10.0",
     "Windows Server 2016 or later"),
    (80, H + "Server: Microsoft-IIS/7.5\r\n\r\n", "http", "Microsoft IIS httpd", "7.5",
     "Windows Server 2008 R2"),
    (5357, H + "Server: Microsoft-HTTPAPI/2.0\r\n\r\n", "http", "Microsoft HTTPAPI httpd", "2.0", "Windows"),
    (80, H + "Server: lighttpd/1.4.69\r\n\r\n", "http", "lighttpd", "1.4.69", None),
    (8080, H + "Server: Jetty(9.4.53.v20231009)\r\n\r\n", "http", "Jetty", "9.4.53.v20231009", None),
    (8080, H + "Content-Type: text/html\r\n\r\n<html><head><title>Apache Tomcat/9.0.83</title>", "http",
     "Apache Tomcat", "9.0.83", None),
    (8080, H + "Server: Apache-Coyote/1.1\r\n\r\n", "http", "Apache Tomcat/Coyote JSP engine", "1.1", None),
    (80, H + "Server: GoAhead-Webs\r\n\r\n", "http", "GoAhead WebServer", None, None),
    (80, H + "Server: GoAhead-http/2.5.0\r\n\r\n", "http", "GoAhead WebServer", "2.5.0", None),
    (80, H + "Server: Boa/0.94.14rc21\r\n\r\n", "http", "Boa HTTPd", "0.94.14rc21", None),
    (80, H + "Server: micro_httpd\r\n\r\n", "http", "micro_httpd", None, None),
    (80, H + "Server: mini_httpd/1.30 26Oct2018\r\n\r\n", "http", "mini_httpd", "1.30", None),
    (80, H + "Server: lwIP/1.4.1 (http://savannah.nongnu.org/projects/lwip)\r\n\r\n", "http", "lwIP httpd",
     "1.4.1", None),
    (80, H + "Server: RomPager/4.07 UPnP/1.0\r\n\r\n", "http", "Allegro RomPager", "4.07", None),
    (80, H + "Server: Allegro-Software-RomPager/4.34\r\n\r\n", "http", "Allegro RomPager", "4.34", None),
    (80, H + "Server: thttpd/2.29 23May2018\r\n\r\n", "http", "thttpd", "2.29", None),
    (80, H + "Server: openresty/1.21.4.1\r\n\r\n", "http", "OpenResty web app server", "1.21.4.1", None),
    (3128, H + "Server: squid/5.7\r\n\r\n", "http-proxy", "Squid http proxy", "5.7", None),
    (5000, H + "Server: Werkzeug/3.0.1 Python/3.11.2\r\n\r\n", "http", "Werkzeug httpd", "3.0.1", None),
    (10000, H + "Server: MiniServ/2.105\r\n\r\n", "http", "Webmin httpd", "2.105", None),
    # LAN gear
    (8006, "HTTP/1.1 501 method 'HEAD' not available\r\nServer: pve-api-daemon/3.0\r\n\r\n", "http",
     "Proxmox Virtual Environment", None, "Debian"),
    (80, H + "Content-Type: text/html\r\n\r\n<html><head><title>RouterOS router configuration page</title>"
     "</head><body><h1>RouterOS v7.12.1</h1>", "http", "MikroTik RouterOS WebFig", "7.12.1",
     "MikroTik RouterOS"),
    (80, H + "\r\n<meta http-equiv=\"refresh\" content=\"0; URL=cgi-bin/luci/\" />", "http", "OpenWrt LuCI",
     None, "OpenWrt"),
    (443, H + "\r\n<html><head><title>UniFi Network</title>", "http", "Ubiquiti UniFi Network", None, None),
    (80, H + "\r\n<html><head><title>EdgeOS</title>", "http", "Ubiquiti EdgeOS", None, None),
    (5000, H + "Server: nginx\r\n\r\n<html><head><title>Synology DiskStation</title>", "http",
     "Synology DSM httpd", None, "Synology DSM"),
    (8080, H + "Server: http server 1.0\r\n\r\n<html><head><title>QNAP Turbo NAS</title>", "http",
     "QNAP NAS http config", None, "QNAP QTS"),
    (80, H + "Server: HP HTTP Server; HP Officejet Pro 8600 - CM749A; Serial Number: CN1234\r\n\r\n", "http",
     "HP printer http config", None, None),
    (80, H + "Server: debut/1.30\r\n\r\n", "http", "Brother printer http admin", None, None),
    (80, H + "Server: EPSON_Linux UPnP/1.0 Epson UPnP SDK/1.0\r\n\r\n", "http", "Epson printer http admin",
     None, None),
    (631, H + "Server: CUPS/2.4 IPP/2.1\r\n\r\n", "ipp", "CUPS", "2.4", None),
    (80, H + "\r\n<html><head><title>FRITZ!Box</title>", "http", "AVM FRITZ!Box http config", None,
     "FRITZ!OS"),
    # UDP renderings
    (53, b"DNS version.bind=dnsmasq-2.89\n\x13\x37", "domain", "dnsmasq", "2.89", None),
    (53, b"DNS version.bind=9.18.28-1~deb12u2-Debian\n", "domain", "ISC BIND", "9.18.28", "Debian 12"),
    (53, b"DNS version.bind=unbound 1.17.1\n", "domain", "Unbound", "1.17.1", None),
    (161, b"SNMP sysDescr=Linux nas 6.1.0-18-amd64 #1 SMP x86_64 sysObjectID=1.3.6.1.4.1.8072.3.2.10\n",
     "snmp", "net-snmp", None, "Linux"),
    (161, b"SNMP sysDescr=RouterOS RB4011iGS+ sysObjectID=1.3.6.1.4.1.14988.1\n", "snmp",
     "MikroTik RouterOS snmpd", None, "MikroTik RouterOS"),
    (1900, "HTTP/1.1 200 OK\r\nSERVER: Linux/3.14 UPnP/1.0 MiniUPnPd/2.1\r\nST: upnp:rootdevice\r\n\r\n",
     "upnp", "MiniUPnP", "2.1", "Linux"),
    # Unknown software: generic extraction
    (2200, "SSH-2.0-AsyncSSH_2.14.0\r\n", "ssh", "AsyncSSH", "2.14.0", None),
    (8000, H + "Server: FooServe/3.2.1\r\n\r\n", "http", "FooServe", "3.2.1", None),
    (2121, "220 files.lan Zftpd 1.2 ready\r\n", "ftp", "Zftpd", "1.2", None),
]


@pytest.mark.parametrize(("port", "banner", "service", "product", "version", "os_hint"), BANNERS)
def test_banner_table(port: int, banner: bytes | str, service: str | None, product: str | None,
                      version: str | None, os_hint: str | None) -> None:
    data = banner.encode("latin-1") if isinstance(banner, str) else banner
    udp = port in (53, 161, 1900) and not data.startswith(b"HTTP/1.1 200 OK\r\nServer")
    protocol = "udp" if udp else "tcp"
    found = default_rules().identify(data, port, protocol)
    got = (found.service, found.product, found.version, found.os_hint)
    assert got == (service, product, version, os_hint)
    assert found.confidence is not None and 0 <= found.confidence <= 10


def test_table_is_large() -> None:
    assert len(BANNERS) >= 60


def test_cpe_is_formed_with_and_without_version() -> None:
    rules = default_rules()
    assert rules.identify(b"SSH-2.0-OpenSSH_9.2p1\r\n", 22).cpe == ["cpe:/a:openbsd:openssh:9.2p1"]
    assert rules.identify(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n", 80).cpe == ["cpe:/a:igor_sysoev:nginx"]


@pytest.mark.parametrize(("port", "protocol", "service"), [
    (22, "tcp", "ssh"), (80, "tcp", "http"), (443, "tcp", "https"), (3306, "tcp", "mysql"),
    (5432, "tcp", "postgresql"), (6379, "tcp", "redis"), (1883, "tcp", "mqtt"), (161, "udp", "snmp"),
    (9100, "tcp", "jetdirect"), (3389, "tcp", "ms-wbt-server"), (27017, "tcp", "mongodb"),
    (8006, "tcp", "https"), (5353, "udp", "mdns"), (1900, "udp", "upnp"), (53, "udp", "domain"),
    (445, "tcp", "microsoft-ds"), (139, "tcp", "netbios-ssn"), (21, "tcp", "ftp"), (25, "tcp", "smtp"),
    (23, "tcp", "telnet"), (5900, "tcp", "vnc"), (8080, "tcp", "http-proxy"),
])
def test_port_hint_is_the_last_resort(port: int, protocol: str, service: str) -> None:
    found = default_rules().identify(b"", port, protocol)
    assert found.service == service
    assert found.product is None
    assert found.confidence == 3
    assert found.method == "port"


def test_unknown_port_and_silence_gives_nothing() -> None:
    found = default_rules().identify(b"", 54321, "tcp")
    assert found.service is None and found.confidence is None


@pytest.mark.parametrize("garbage", [
    b"\x00" * 100000, bytes(range(256)) * 300, b"SSH-2.0-" + b"A" * 1_000_000, b"Server: " + b"\xff" * 70000,
    b"HTTP/1.1 200 OK\r\nServer: " + b"x/" * 50000,
])
def test_hostile_input_is_capped_and_safe(garbage: bytes) -> None:
    found = default_rules().identify(garbage, 80)
    for value in (found.product, found.version, found.extra_info, found.os_hint):
        assert value is None or (len(value) <= 200 and value.isprintable())


def test_escape_banner() -> None:
    assert escape_banner(b"SSH-2.0-x\r\n\x00\xff\\") == "SSH-2.0-x\\r\\n\\x00\\xff\\\\"
    assert escape_banner(b"a" * 2000).endswith("...")


def test_templates_like_nmap() -> None:
    import re

    m = re.match(r"(\w+)_(\w+)", "7_4p1")
    assert m is not None
    assert expand('$1.$2', m) == "7.4p1"
    assert expand('$SUBST(2,"p",".")', m) == "4.1"
    assert expand("$9", m) == ""


def test_a_bad_rules_file_names_the_rule() -> None:
    with pytest.raises(RuleError, match=r"rule #2"):
        RuleSet.from_text("rules:\n  - {match: 'ok'}\n  - {match: '(unclosed'}\n", source="x.yaml")
    with pytest.raises(RuleError, match=r"x\.yaml"):
        RuleSet.from_text("rules:\n  - {match: 'ok', bogus: 1}\n", source="x.yaml")


def test_nmap_service_probes_lines_are_translated() -> None:
    text = "\n".join([
        "Probe TCP NULL q||",
        r"match ssh m|^SSH-([\d.]+)-FooSSH_([\w.]+)\r?\n| p/FooSSH/ v/$2/ i/protocol $1/"
        r" cpe:/a:foo:foossh:$2/",
        r"match ftp m/^220 (?>atomic)/ p/Perl only/",
        r"softmatch http m|^HTTP/1\.[01] \d\d\d|",
    ])
    rules, skipped = load_nmap_probes(text)
    assert skipped == 1
    extended = RuleSet([], [], {}).with_extra(rules)
    found = extended.identify(b"SSH-2.0-FooSSH_1.5\r\n", 22)
    assert (found.product, found.version, found.extra_info) == ("FooSSH", "1.5", "protocol 2.0")
    assert found.cpe == ["cpe:/a:foo:foossh:1.5"]
    assert found.rule == "nmap"


def test_real_nmap_file_loads_when_present() -> None:
    from pathlib import Path

    path = Path("/usr/share/nmap/nmap-service-probes")
    if not path.is_file():
        pytest.skip("nmap-service-probes not installed")
    rules, _skipped = load_nmap_probes(path.read_text(errors="replace"))
    assert len(rules) > 5000
