"""sinks.notify's section: the documented sample, targets and rules checked where they are written,
secrets from files and never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lanscope.commands.config import effective
from lanscope.config import ConfigError, parse
from lanscope.runtime.stage import StageDisabled
from sinks.notify import Notify, build
from tests.stage_samples import check_sample


def notify(text: str, env: dict[str, str] | None = None, **top: Any) -> Any:
    raw = {"sinks": {"notify": yaml.safe_load(text)}, **top}
    return parse(raw, env=env or {}).sinks.notify


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        notify(text)
    return [p.removeprefix("config: ") for p in caught.value.problems]


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("notify")


def test_no_targets_means_the_stage_does_not_run(tmp_path: Path) -> None:
    config = parse({"data_dir": str(tmp_path)}, env={})
    with pytest.raises(StageDisabled, match="no targets"):
        build(config.sinks.notify, config.stage_context())


def test_a_full_config_builds_with_each_kind_of_target(tmp_path: Path) -> None:
    config = parse(yaml.safe_load(f"""
data_dir: {tmp_path}
sinks:
  notify:
    targets:
      phone: {{apprise: {{url: "ntfys://tk_abcdef123456@ntfy.sh/my-lan"}}}}
      hook: {{webhook: {{url: "https://hooks.example/x", secret: k, cloudevents: true}}}}
      ha: {{mqtt: {{host: 127.0.0.1, trackers: known}}}}
    rules:
      - name: new
        kinds: [new]
        known: false
        subnets: [192.168.1.0/24]
        targets: [phone, ha]
        quiet_hours: {{start: "22:00", end: "07:00", timezone: Europe/Berlin}}
      - name: findings
        kinds: [finding_opened]
        min_severity: high
        rate_limit: {{max: 3, per_secs: 600}}
        targets: [hook]
"""), env={})
    stage = build(config.sinks.notify, config.stage_context())
    assert isinstance(stage, Notify)
    kinds = {name: sender.kind for name, sender in stage.senders.items()}
    assert kinds == {"phone": "apprise", "hook": "webhook", "ha": "mqtt"}
    assert stage.ledger.path == tmp_path / "notify" / "ledger.jsonl"


@pytest.mark.parametrize(("text", "expected"), [
    ("targets: {t: {}}", "sinks.notify.targets.t: needs exactly one of apprise, webhook, mqtt"),
    ("targets: {t: {webhook: {url: 'https://x'}, mqtt: {host: b}}}",
     "sinks.notify.targets.t: has webhook and mqtt: one kind per target"),
    ("targets: {t: {webhook: {}}}", "sinks.notify.targets.t.webhook.url: required (or url_file)"),
    ("targets: {t: {webhook: {url: 'ftp://x'}}}", "sinks.notify.targets.t.webhook.url: must be an http"),
    ("targets: {t: {mqtt: {}}}", "sinks.notify.targets.t.mqtt.host: required"),
    ("targets: {t: {mqtt: {host: b, topic_prefix: 'a/#'}}}", "sinks.notify.targets.t.mqtt.topic_prefix:"),
    ("targets: {t: {webhook: {url: 'https://x', colour: red}}}", "sinks.notify.targets.t.webhook.colour: "
                                                                   "unknown key"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: r, targets: [nope]}]",
     "sinks.notify.rules[0].targets[0]: no target named 'nope' under sinks.notify.targets (known: t)"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{targets: [t]}]",
     "sinks.notify.rules[0].name: required"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: a, targets: [t]}, {name: a, targets: [t]}]",
     "sinks.notify.rules[1].name: 'a' is used by an earlier rule"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: a, targets: [t], kinds: [nwe]}]",
     "sinks.notify.rules[0].kinds[0]: Invalid enum value 'nwe'"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: a, targets: [t], subnet: [10.0.0.0/8]}]",
     "sinks.notify.rules[0].subnet: unknown key; did you mean subnets?"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: a, targets: [t], subnets: [10.0.0.0/33]}]",
     "sinks.notify.rules[0].subnets[0]: '10.0.0.0/33' is not a network"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\n"
     "rules: [{name: a, targets: [t], quiet_hours: {start: '25:00', timezone: Mars/Olympus}}]",
     "sinks.notify.rules[0].quiet_hours.start: '25:00' is not a time of day"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\n"
     "rules: [{name: a, targets: [t], quiet_hours: {timezone: Mars/Olympus}}]",
     "sinks.notify.rules[0].quiet_hours.timezone: unknown time zone 'Mars/Olympus'"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [{name: a, targets: [t], title: '{{ host.name'}]",
     "sinks.notify.rules[0].title: template syntax error on line 1"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\n"
     "rules: [{name: a, targets: [t], kinds: [new], fields: [x]}]",
     "sinks.notify.rules[0].fields: only `changed` events have fields"),
    ("targets: {t: {webhook: {url: 'https://x'}}}\nrules: [a]", "sinks.notify.rules[0]: expected a section"),
])
def test_a_problem_is_named_where_it_is_written(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_secrets_come_from_env_or_files_and_are_never_shown(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("json://user:Fi1e-pa55@127.0.0.1/hook\n")
    (tmp_path / "hmac").write_text("hm4c-k3y")
    (tmp_path / "mqtt").write_text("mq-pa55")
    config = notify(f"""
targets:
  a: {{apprise: {{url_file: {tmp_path / 'url'}}}}}
  w: {{webhook: {{url: "https://hooks.example/${{HOOK_TOKEN}}", secret_file: {tmp_path / 'hmac'},
                 headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}}}}}
  m: {{mqtt: {{host: b, user: u, password_file: {tmp_path / 'mqtt'}}}}}
""", env={"HOOK_TOKEN": "t0ken-XYZ"})
    assert config.targets["a"].apprise.url == "json://user:Fi1e-pa55@127.0.0.1/hook"
    assert config.targets["w"].webhook.url == "https://hooks.example/t0ken-XYZ"
    assert config.targets["w"].webhook.secret == "hm4c-k3y"
    assert config.targets["m"].mqtt.password == "mq-pa55"
    shown = repr(config) + str(effective(parse({"sinks": {"notify": {"targets": {
        "w": {"webhook": {"url": "https://h/t0ken-XYZ", "secret": "hm4c-k3y"}}}}}}, env={})))
    for secret in ("Fi1e-pa55", "hm4c-k3y", "mq-pa55", "t0ken-XYZ"):
        assert secret not in shown


def test_a_secret_and_its_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("x")
    found = problems(f"targets: {{w: {{webhook: {{url: 'https://x', secret: a, "
                     f"secret_file: {tmp_path / 's'}}}}}}}")
    assert found == ["sinks.notify.targets.w.webhook.secret_file: set either secret or secret_file, not both"]
