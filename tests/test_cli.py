"""The command line: every command's arguments, -c/-v/--json on either side of the command,
`lanscope --help` without heavy imports, and where `watch` looks for the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lanscope import cli
from lanscope.config import NatsConfig
from lanscope.runtime.embedded import EmbeddedNats

# The fewest arguments each command needs, and whether it offers --json.
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "run": ([], False),
    "sensor": (["--key"], False),
    "hub-config": (["/tmp/hub-credentials"], False),
    "provision": ([], False),
    "watch": ([], True),
    "discover": (["198.18.0.0/24"], True),
    "scan": (["198.18.0.10", "-p", "22"], True),
    "probe": (["198.18.0.10"], True),
    "ping": (["198.18.0.0/24"], True),
    "arp": ([], True),
    "list": (["198.18.0.0/30"], True),
    "leases": ([], True),
    "proxmox": ([], True),
    "fingerprint": ([], True),             # --jsonl, also spelt --json
    "interfaces": ([], True),
    "ip": (["198.18.0.10"], True),
    "dns": (["ssh.lab.test"], True),
    "query": (["SELECT 1"], True),
    "status": (["198.18.0.10"], True),
    "schema": (["--subjects"], True),
    "config": (["show"], True),
    "web": ([], False),
    "notify": (["test", "hook"], False),
}


def test_the_table_names_every_command() -> None:
    assert set(COMMANDS) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("json_flag", ["none", "before", "after"])
def test_common_options_on_either_side(command: str, where: str, json_flag: str) -> None:
    needed, offers_json = COMMANDS[command]
    common = ["-c", "/etc/lanscope/other.yaml", "-v"]
    argv = [*common, command, *needed] if where == "before" else [command, *needed, *common]
    if json_flag == "before":
        argv = ["--json", *argv]
    elif json_flag == "after":
        argv = [*argv, "--json"]
    if json_flag != "none" and not offers_json:
        with pytest.raises(SystemExit) as exited:
            cli.parse_args(argv)
        assert exited.value.code == 2
        return
    args = cli.parse_args(argv)
    assert args is not None and args.command == command
    assert args.config == "/etc/lanscope/other.yaml" and args.verbose == 1
    if offers_json:
        assert args.json is (json_flag != "none")


def test_verbosity_adds_up_and_two_configs_are_refused() -> None:
    args = cli.parse_args(["-v", "ip", "10.0.0.1", "-vv"])
    assert args is not None and args.verbose == 3 and args.config is None
    with pytest.raises(SystemExit):
        cli.parse_args(["-c", "a.yaml", "ip", "10.0.0.1", "-c", "b.yaml"])


def test_a_config_file_named_like_a_command_is_not_the_command() -> None:
    args = cli.parse_args(["-c", "scan", "ip", "10.0.0.1"])
    assert args is not None and args.command == "ip" and args.config == "scan"


def test_help_imports_no_config_loader_rich_or_command() -> None:
    """`lanscope --help` stays fast: msgspec, yaml, rich and the commands load only when a
    command runs (measured: 0.04 s, was 0.09-0.21 s)."""
    code = ("import sys, contextlib, io\n"
            "from lanscope.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "heavy = [m for m in ('msgspec', 'yaml', 'rich', 'lanscope.config', 'lanscope.log',\n"
            "                      'lanscope.commands.scan', 'asyncio') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def config_file(tmp_path: Path, data_dir: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {data_dir}\n")
    return str(path)


def test_watch_takes_c_after_the_command_and_says_how_to_point_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "-c", config_file(tmp_path, tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "unrecognized" not in err
    assert f"no `lanscope run` serves data_dir {tmp_path / 'empty'}" in err


def test_watch_names_the_data_dir_of_a_running_pipeline(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A pipeline started with another config (make lab-run: data_dir var/lab) is named in the
    hint, and the command finds it when pointed at that data_dir."""
    server = EmbeddedNats.from_config(NatsConfig(), tmp_path / "elsewhere")   # as `lanscope run` starts it
    server.start()
    try:
        assert cli.main(["watch", "-c", config_file(tmp_path, tmp_path / "empty")]) == 1
        err = capsys.readouterr().err
        assert f"data_dir {tmp_path / 'elsewhere'}" in err and "LANSCOPE_DATA_DIR" in err
        # Pointed at that data_dir (as `-c tests/lab/lanscope.yaml` points at var/lab), it connects.
        pointed = config_file(tmp_path, tmp_path / "elsewhere")
        assert cli.main(["provision", "-c", pointed]) == 0
        assert server.url in capsys.readouterr().out          # the running server, not a new one
        watch = subprocess.Popen([sys.executable, "-m", "lanscope", "watch", "-c", pointed],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stderr is not None
            assert f"on {server.url}" in watch.stderr.readline()
        finally:
            watch.terminate()
            assert watch.wait(timeout=10) == 0
    finally:
        server.stop()


def test_schema_subjects_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--subjects", "--json"]) == 0
    streams = json.loads(capsys.readouterr().out)["streams"]
    assert {"LANSCOPE_FACTS", "LANSCOPE_CHANGES"} <= {s["name"] for s in streams}
    assert all(s["subjects"] and s["description"] for s in streams)
