"""Real servers from Debian packages, configured to run inside a lab host.

Each service kind knows how to write its own config (and data directory)
under the lab's state dir, the argv that runs it in the foreground bound to
the host's lab address, how to stop it and how to tell it answers. Nothing
under /etc is read or written, except what the binaries read on their own.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import probes
from .netns import LabError
from .topology import DHCP_RANGE, DOMAIN, SCANNER_IP, SCANNER_IP6, LabHost


@dataclass(frozen=True)
class Context:
    """What a service needs to know to configure itself."""

    host: LabHost
    dir: Path  # private directory for this instance's config, data and logs
    hosts: tuple[LabHost, ...]  # the whole lab (for DNS records)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # drop to this user with setpriv


@dataclass(frozen=True)
class ServiceKind:
    """One server program: how to configure, start, stop and probe it."""

    name: str
    binary: str  # the executable whose Debian package we report
    prepare: Callable[[Context], Launch]
    stop_signal: int = signal.SIGTERM
    # How to tell it answers: 'tcp' (connect to host.tcp_open[0]), 'banner'
    # (a server-first greeting arrives there), 'snmp' (a GET is answered), 'udp', 'icmp' or
    # 'running' (no question to ask).
    probe: str = "tcp"
    start_timeout: float = 30.0
    # 'udp' probes: the port whose query (probes.UDP_QUERIES) must be answered; 'icmp': the
    # host answers an echo (it has its address).
    port: int = 0


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _run(argv: list[str], *, timeout: float = 60) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-800:]}")


def _index(ctx: Context, server: str) -> Path:
    root = ctx.dir / "www"
    _write(root / "index.html", f"<html><body><h1>{server} on {ctx.host.fqdn}</h1></body></html>\n")
    return root


# --- SSH -------------------------------------------------------------------


def _openssh(ctx: Context) -> Launch:
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keys = []
    for kind in ("ed25519", "ecdsa"):
        key = ctx.dir / f"ssh_host_{kind}_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-N", "", "-t", kind, "-f", str(key), "-C", ctx.host.fqdn])
        keys.append(f"HostKey {key}")
    listen = [f"ListenAddress {ctx.host.ip}:22"]
    if ctx.host.ip6:
        listen.append(f"ListenAddress [{ctx.host.ip6}]:22")
    config = _write(
        ctx.dir / "sshd_config",
        "\n".join(
            [
                *listen,
                *keys,
                f"PidFile {ctx.dir / 'sshd.pid'}",
                "UsePAM no",
                "PermitRootLogin no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AuthorizedKeysFile none",
                "",
            ]
        ),
    )
    return Launch(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])


def _dropbear(ctx: Context) -> Launch:
    key = ctx.dir / "dropbear_ed25519_host_key"
    if not key.exists():
        _run(["dropbearkey", "-t", "ed25519", "-f", str(key)])
    return Launch(
        [
            "/usr/sbin/dropbear",
            "-F",
            "-E",
            "-s",
            "-p",
            f"{ctx.host.ip}:22",
            "-r",
            str(key),
            "-P",
            str(ctx.dir / "dropbear.pid"),
        ]
    )


# --- HTTP ------------------------------------------------------------------


def _nginx(ctx: Context) -> Launch:
    root = _index(ctx, "nginx")
    tmp = ctx.dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    ports = sorted(set(ctx.host.tcp_open + ctx.host.tcp_filtered))
    listen = [f"listen {ctx.host.ip}:{p};" for p in ports]
    if ctx.host.ip6:
        listen += [f"listen [{ctx.host.ip6}]:{p};" for p in ports]
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = _write(
        ctx.dir / "nginx.conf",
        f"""daemon off;
worker_processes 1;
pid {ctx.dir / "nginx.pid"};
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    server_tokens on;
{temp_paths}
    server {{
        {" ".join(listen)}
        server_name {ctx.host.fqdn};
        root {root};
        index index.html;
    }}
}}
""",
    )
    return Launch(["/usr/sbin/nginx", "-e", "stderr", "-p", str(ctx.dir), "-c", str(config)], env={})


def _apache(ctx: Context) -> Launch:
    root = _index(ctx, "apache")
    run = ctx.dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    modules = "\n".join(
        f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so"
        for m in ("mpm_event", "authz_core", "dir", "mime")
    )
    config = _write(
        ctx.dir / "apache2.conf",
        f"""ServerRoot "{ctx.dir}"
DefaultRuntimeDir "{run}"
PidFile "{run / "apache2.pid"}"
Mutex file:{run} default
{modules}
User www-data
Group www-data
Listen {ctx.host.ip}:80
ServerName {ctx.host.fqdn}
ServerTokens Full
ErrorLog /dev/stderr
LogLevel warn
TypesConfig /etc/mime.types
DocumentRoot "{root}"
DirectoryIndex index.html
<Directory "{root}">
    Require all granted
</Directory>
""",
    )
    return Launch(["/usr/sbin/apache2", "-f", str(config), "-DFOREGROUND"], env={"LANG": "C"})


def _lighttpd(ctx: Context) -> Launch:
    root = _index(ctx, "lighttpd")
    config = _write(
        ctx.dir / "lighttpd.conf",
        f"""server.document-root = "{root}"
server.bind = "{ctx.host.ip}"
server.port = 80
server.pid-file = "{ctx.dir / "lighttpd.pid"}"
server.username = "www-data"
server.groupname = "www-data"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html" )
""",
    )
    return Launch(["/usr/sbin/lighttpd", "-D", "-f", str(config)])


# --- Data stores and brokers -------------------------------------------------


def _redis(ctx: Context) -> Launch:
    return Launch(
        [
            "/usr/bin/redis-server",
            "--bind", ctx.host.ip,
            "--port", "6379",
            "--dir", str(ctx.dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", "",
        ]
    )  # fmt: skip


def _mosquitto(ctx: Context) -> Launch:
    config = _write(
        ctx.dir / "mosquitto.conf",
        f"""listener 1883 {ctx.host.ip}
allow_anonymous true
persistence false
log_dest stderr
""",
    )
    return Launch(["/usr/sbin/mosquitto", "-c", str(config)])


def _mariadb(ctx: Context) -> Launch:
    data = ctx.dir / "data"
    if not (data / "mysql").exists():
        _run(
            [
                "mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
            ],
            timeout=120,
        )  # fmt: skip
    return Launch(
        [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
            f"--bind-address={ctx.host.ip}", "--port=3306", f"--socket={ctx.dir / 'mysqld.sock'}",
            f"--pid-file={ctx.dir / 'mariadb.pid'}", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-buffer-pool-size=16M", "--performance-schema=OFF",
            # Any client may connect, so scanners get the full greeting.
            "--skip-grant-tables",
        ]
    )  # fmt: skip


def _postgres_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise LabError(f"PostgreSQL {tool} not found under /usr/lib/postgresql (package postgresql)")
    return found[-1]


def _postgresql(ctx: Context) -> Launch:
    data, sock = ctx.dir / "data", ctx.dir / "sock"
    sock.mkdir(parents=True, exist_ok=True)
    shutil.chown(ctx.dir, "postgres", "postgres")
    shutil.chown(sock, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        _run(
            [
                *_as_user("postgres"),
                _postgres_bin("initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            timeout=120,
        )
    return Launch(
        [
            _postgres_bin("postgres"), "-D", str(data),
            "-c", f"listen_addresses={ctx.host.ip}", "-c", "port=5432",
            "-c", f"unix_socket_directories={sock}", "-c", "fsync=off", "-c", "logging_collector=off",
        ],
        user="postgres",
    )  # fmt: skip


def _rabbitmq(ctx: Context) -> Launch:
    base = ctx.dir / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    shutil.chown(ctx.dir, "rabbitmq", "rabbitmq")
    shutil.chown(base, "rabbitmq", "rabbitmq")
    config = _write(
        ctx.dir / "rabbitmq.conf", f"listeners.tcp.1 = {ctx.host.ip}:5672\nloopback_users = none\n"
    )
    env = {
        "HOME": str(base),
        "RABBITMQ_CONFIG_FILE": str(config.with_suffix("")),
        "RABBITMQ_CONFIG_FILES": str(ctx.dir / "conf.d"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_DIST_PORT": "25672",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_LOGS": "-",
    }
    return Launch(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env, user="rabbitmq")


# --- Network services --------------------------------------------------------


def _dnsmasq(ctx: Context) -> Launch:
    records = [f"host-record={h.fqdn},{h.ip}" + (f",{h.ip6}" if h.ip6 else "") for h in ctx.hosts]
    records.append(f"host-record=scanner.{DOMAIN},{SCANNER_IP},{SCANNER_IP6}")
    config = _write(
        ctx.dir / "dnsmasq.conf",
        "\n".join(
            [
                "port=53",
                f"listen-address={ctx.host.ip}",
                "bind-interfaces",
                "no-resolv",
                "no-hosts",
                "no-poll",
                f"domain={DOMAIN}",
                f"local=/{DOMAIN}/",
                "local=/18.198.in-addr.arpa/",
                "local=/19.198.in-addr.arpa/",
                f"pid-file={ctx.dir / 'dnsmasq.pid'}",
                "log-facility=-",
                # DHCP for the lab's DHCP host (a reservation) and for joining hosts (the pool);
                # no ping check before an offer (it would delay every join by seconds).
                "interface=eth0",
                f"dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.0.0,10m",
                *(f"dhcp-host={h.mac},{h.ip},{h.name}" for h in ctx.hosts if h.dhcp),
                f"dhcp-leasefile={ctx.dir / 'dnsmasq.leases'}",
                "dhcp-authoritative",
                "no-ping",
                "dhcp-option=option:router",
                f"dhcp-option=option:dns-server,{ctx.host.ip}",
                *records,
                "",
            ]
        ),
    )
    return Launch(["/usr/sbin/dnsmasq", "--keep-in-foreground", f"--conf-file={config}"])


def _vsftpd(ctx: Context) -> Launch:
    empty = ctx.dir / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    config = _write(
        ctx.dir / "vsftpd.conf",
        f"""listen=YES
listen_ipv6=NO
listen_address={ctx.host.ip}
listen_port=21
background=NO
anonymous_enable=YES
anon_root={empty}
no_anon_password=YES
local_enable=NO
write_enable=NO
secure_chroot_dir={empty}
seccomp_sandbox=NO
xferlog_enable=NO
""",
        mode=0o600,
    )
    return Launch(["/usr/sbin/vsftpd", str(config)])


def _snmpd(ctx: Context) -> Launch:
    # AgentX master: lldpd on the same host serves LLDP-MIB (its neighbours) through it.
    config = _write(
        ctx.dir / "snmpd.conf",
        f"""rocommunity public
sysDescr lanscope lab snmpd on {ctx.host.fqdn} (Net-SNMP)
sysName {ctx.host.fqdn}
sysLocation lanscope lab
sysContact lab@{DOMAIN}
master agentx
agentXSocket unix:{_agentx_socket(ctx)}
""",
    )
    return Launch(
        [
            "/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(config), "-p", str(ctx.dir / "snmpd.pid"),
            f"udp:{ctx.host.ip}:161",
        ],
        env={"SNMP_PERSISTENT_DIR": str(ctx.dir / "persist"), "MIBS": "", "MIBDIRS": str(ctx.dir)},
    )  # fmt: skip


def _postfix(ctx: Context) -> Launch:
    conf, queue, data = ctx.dir / "conf", ctx.dir / "queue", ctx.dir / "data"
    for path in (conf, queue, data):
        path.mkdir(parents=True, exist_ok=True)
    shutil.chown(data, "postfix", "postfix")
    _write(
        conf / "main.cf",
        f"""compatibility_level = 3.6
myhostname = {ctx.host.fqdn}
mydomain = {DOMAIN}
inet_interfaces = {ctx.host.ip}
inet_protocols = ipv4
mynetworks = 198.18.0.0/15
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
maillog_file = /dev/stdout
local_recipient_maps =
mydestination =
relayhost =
""",
    )
    _write(
        conf / "master.cf",
        """smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp-out  unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""",
    )
    # `postfix check` creates the queue directories with the right owners; it
    # must run where inet_interfaces exists.
    _run(["ip", "netns", "exec", ctx.host.ns, "postfix", "-c", str(conf), "check"], timeout=60)
    # -s: stay in the foreground (what `postfix start-fg` does outside PID 1).
    return Launch(["/usr/lib/postfix/sbin/master", "-c", str(conf), "-s"], env={"MAIL_CONFIG": str(conf)})


# --- Devices that announce themselves (mDNS, NetBIOS, UPnP, a DHCP client) -------------

# What each avahi host advertises: (instance name, type, port, TXT records). Shapes of what
# such devices publish: an IPP printer's TXT keys (ty, usb_MFG, usb_MDL), a Synology's
# _http._tcp with vendor/model, a Linux desktop's workstation and SSH.
_AVAHI_SERVICES: dict[str, list[tuple[str, str, int, list[str]]]] = {
    "printer": [
        ("Lab LaserJet", "_ipp._tcp", 631, ["txtvers=1", "ty=HP LaserJet Pro M404dn", "usb_MFG=HP",
                                            "usb_MDL=LaserJet Pro M404dn", "rp=ipp/print",
                                            "pdl=application/pdf,image/urf"]),
        ("Lab LaserJet", "_pdl-datastream._tcp", 9100, ["ty=HP LaserJet Pro M404dn"]),
    ],
    "nas": [
        ("nas", "_smb._tcp", 445, []),
        ("nas", "_http._tcp", 5000, ["vendor=Synology", "model=DS920+", "version_major=7"]),
        ("nas", "_adisk._tcp", 9, ["sys=waMa=0,adVF=0x100", "dk0=adVN=TimeMachine,adVF=0x82"]),
    ],
    "desktop": [
        ("desktop", "_ssh._tcp", 22, []),
        ("desktop", "_sftp-ssh._tcp", 22, []),
    ],
}


def _avahi(ctx: Context) -> Launch:
    services = ctx.dir / "services"
    run = ctx.dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    for i, (name, kind, port, txt) in enumerate(_AVAHI_SERVICES.get(ctx.host.name, [])):
        records = "".join(f"<txt-record>{t}</txt-record>" for t in txt)
        _write(services / f"{i}.service",
               f'<?xml version="1.0" standalone="no"?>\n<service-group><name>{name}</name>'
               f"<service><type>{kind}</type><port>{port}</port>{records}</service></service-group>\n")
    services.mkdir(parents=True, exist_ok=True)
    config = _write(
        ctx.dir / "avahi-daemon.conf",
        f"""[server]
host-name={ctx.host.name}
domain-name=local
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=no
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation={"yes" if ctx.host.name == "desktop" else "no"}
""",
    )
    # avahi-daemon's pid file and service directory are fixed paths: bind-mount the
    # instance's own over them (`ip netns exec` gives every process a private mount
    # namespace, so nothing outside the state dir changes but the empty /run/avahi-daemon).
    script = (f"mkdir -p /run/avahi-daemon && mount --bind {run} /run/avahi-daemon && "
              f"mount --bind {services} /etc/avahi/services && "
              f"exec /usr/sbin/avahi-daemon -f {config} --no-drop-root --no-chroot --no-rlimits")
    return Launch(["sh", "-c", script])


def _nmbd(ctx: Context) -> Launch:
    dirs = {key: ctx.dir / key for key in ("lock", "state", "cache", "pid", "private", "log")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    config = _write(
        ctx.dir / "smb.conf",
        f"""[global]
netbios name = {ctx.host.name.upper()}
workgroup = LAB
server string = {ctx.host.name} in the lanscope lab
interfaces = eth0
bind interfaces only = yes
disable netbios = no
local master = no
lock directory = {dirs["lock"]}
state directory = {dirs["state"]}
cache directory = {dirs["cache"]}
pid directory = {dirs["pid"]}
private dir = {dirs["private"]}
ncalrpc dir = {dirs["lock"] / "ncalrpc"}
nmbd:socket dir = {dirs["lock"] / "nmbd"}
# (its packet socket: by default /run/samba/nmbd/unexpected, shared with every other nmbd)
log file = {dirs["log"] / "%m.log"}
""",
    )
    return Launch(["/usr/sbin/nmbd", "-F", "--no-process-group", "--debug-stdout", "-s", str(config)])


def _minidlna(ctx: Context) -> Launch:
    for sub in ("media", "db", "log"):
        (ctx.dir / sub).mkdir(parents=True, exist_ok=True)
    config = _write(
        ctx.dir / "minidlna.conf",
        f"""media_dir={ctx.dir / "media"}
db_dir={ctx.dir / "db"}
log_dir={ctx.dir / "log"}
network_interface=eth0
port={ctx.host.tcp_open[0]}
friendly_name=Lab Media Server
model_name=MiniDLNA
inotify=no
notify_interval=60
""",
    )
    return Launch(["/usr/sbin/minidlnad", "-S", "-f", str(config), "-P", str(ctx.dir / "minidlna.pid"),
                   "-u", "root"])


def _udhcpc(ctx: Context) -> Launch:
    # BusyBox's DHCP client, in the foreground, keeping its lease; the script puts the
    # address it got on the interface (udhcpc's default script wants resolvconf and /etc).
    script = _write(
        ctx.dir / "udhcpc.script",
        """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
""",
        mode=0o755,
    )
    return Launch(["/usr/sbin/udhcpc", "-f", "-i", "eth0", "-s", str(script), "-x", "hostname:thermostat",
                   "-t", "1000", "-T", "1", "-A", "1"])


def _agentx_socket(ctx: Context) -> Path:
    """The AgentX socket of the host's snmpd (in snmpd's own state directory)."""
    return ctx.dir.parent / f"{ctx.host.name}-snmpd" / "agentx.sock"


def _lldpd(ctx: Context) -> Launch:
    # LLDP on eth0 (the bridge forwards LLDP frames: group_fwd_mask); where the host runs
    # snmpd too, lldpd is its AgentX subagent for LLDP-MIB (lldpRemTable: the neighbours).
    config = _write(ctx.dir / "lldpd.conf", f"configure system hostname {ctx.host.name}\n")
    argv = ["/usr/sbin/lldpd", "-d", "-I", "eth0", "-u", str(ctx.dir / "lldpd.socket"), "-O", str(config)]
    if "snmpd" in ctx.host.services:
        argv += ["-x", "-X", str(_agentx_socket(ctx))]
    return Launch(argv)


def _as_user(user: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--reset-env"]


KINDS: dict[str, ServiceKind] = {
    k.name: k
    for k in (
        ServiceKind("openssh", "/usr/sbin/sshd", _openssh, probe="banner"),
        ServiceKind("dropbear", "/usr/sbin/dropbear", _dropbear, probe="banner"),
        ServiceKind("nginx", "/usr/sbin/nginx", _nginx, stop_signal=signal.SIGTERM),
        ServiceKind("apache", "/usr/sbin/apache2", _apache, stop_signal=signal.SIGTERM),
        ServiceKind("lighttpd", "/usr/sbin/lighttpd", _lighttpd),
        ServiceKind("redis", "/usr/bin/redis-server", _redis),
        ServiceKind("mosquitto", "/usr/sbin/mosquitto", _mosquitto),
        ServiceKind("mariadb", "/usr/sbin/mariadbd", _mariadb, probe="banner", start_timeout=60),
        ServiceKind("postgresql", "postgres", _postgresql, stop_signal=signal.SIGINT, start_timeout=60),
        ServiceKind("rabbitmq", "/usr/lib/rabbitmq/bin/rabbitmq-server", _rabbitmq, start_timeout=90),
        ServiceKind("dnsmasq", "/usr/sbin/dnsmasq", _dnsmasq),
        ServiceKind("vsftpd", "/usr/sbin/vsftpd", _vsftpd, probe="banner"),
        ServiceKind("snmpd", "/usr/sbin/snmpd", _snmpd, probe="snmp"),
        ServiceKind("postfix", "/usr/sbin/postfix", _postfix, probe="banner"),
        ServiceKind("avahi", "/usr/sbin/avahi-daemon", _avahi, probe="udp", port=5353),
        ServiceKind("nmbd", "/usr/sbin/nmbd", _nmbd, probe="udp", port=137),
        ServiceKind("minidlna", "/usr/sbin/minidlnad", _minidlna),
        ServiceKind("udhcpc", "/usr/sbin/udhcpc", _udhcpc, probe="icmp"),
        ServiceKind("lldpd", "/usr/sbin/lldpd", _lldpd, probe="running"),
    )
}


def binary_path(kind: ServiceKind) -> str:
    """Absolute path of the kind's executable (resolving 'postgres')."""
    return _postgres_bin("postgres") if kind.binary == "postgres" else kind.binary


def launch_argv(ns: str, launch: Launch) -> list[str]:
    """The full argv that runs `launch` inside namespace `ns`."""
    user = _as_user(launch.user) if launch.user else []
    env = ["env", *(f"{k}={v}" for k, v in launch.env.items())] if launch.user and launch.env else []
    return ["ip", "netns", "exec", ns, *user, *env, *launch.argv]


def answers(kind: ServiceKind, host: LabHost, timeout: float = 0.5) -> bool:
    """Does this service on `host` answer? Call from inside the scanner ns."""
    if kind.probe == "snmp":
        return probes.snmp_get(host.ip, timeout=timeout) is not None
    if kind.probe == "udp":
        return probes.udp_answers(host.ip, kind.port, timeout=timeout) is not None
    if kind.probe == "icmp":
        return probes.icmp_echo(host.ip, timeout=timeout)
    if kind.probe == "running":     # nothing to ask it: started is ready (the caller checks it lives)
        return True
    if kind.probe == "banner":
        try:
            return bool(probes.tcp_banner(host.ip, host.tcp_open[0], timeout=timeout))
        except OSError:
            return False
    return probes.tcp_state(host.ip, host.tcp_open[0], timeout=timeout) == probes.OPEN


def service_env(launch: Launch) -> dict[str, str]:
    """Environment for the launched process (setpriv --reset-env drops it anyway)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    base.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return {**base, **launch.env}


class Served(NamedTuple):
    """A lab server and how a scanner should name it (the port_probe lab test and bench)."""

    host: str           # lab host
    port: int
    kind: str           # service kind (Lab.package_version / upstream_version)
    service: str        # the service name lanscope reports
    product: str        # the product as lanscope names it
    nmap_product: str   # a substring of nmap's product text
    versioned: bool     # does it show its version to an unauthenticated client?


SERVED: tuple[Served, ...] = (
    Served("ssh", 22, "openssh", "ssh", "OpenSSH", "OpenSSH", True),
    Served("dropbear", 22, "dropbear", "ssh", "Dropbear sshd", "Dropbear", True),
    Served("nginx", 80, "nginx", "http", "nginx", "nginx", True),
    Served("apache", 80, "apache", "http", "Apache httpd", "Apache", True),
    Served("redis", 6379, "redis", "redis", "Redis key-value store", "Redis", True),
    Served("mqtt", 1883, "mosquitto", "mqtt", "Mosquitto", "Mosquitto", True),
    Served("mariadb", 3306, "mariadb", "mysql", "MariaDB", "MariaDB", True),
    Served("ftp", 21, "vsftpd", "ftp", "vsftpd", "vsftpd", True),
    Served("lighttpd", 80, "lighttpd", "http", "lighttpd", "lighttpd", True),
    Served("postgres", 5432, "postgresql", "postgresql", "PostgreSQL DB", "PostgreSQL", False),
    Served("smtp", 25, "postfix", "smtp", "Postfix smtpd", "Postfix", False),
)
