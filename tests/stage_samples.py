"""Checks of a stage's documented config sample (``<kind>/<stage>/config.sample.yaml``).

Each stage's tests call ``check_sample``: the sample decodes into the stage's
Config, documents every field (nested ones too) with exactly the field's
default, and config.yaml carries the same text — so the docs, config.yaml and
the one default in the Struct cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from lanscope.config import load, parse
from lanscope.runtime.topology import STAGES

ROOT = Path(__file__).resolve().parents[1]


def sample_path(name: str) -> Path:
    spec = STAGES[name]
    return ROOT / spec.kind.value / name / "config.sample.yaml"


def section_text(name: str) -> str:
    """The sample from the stage's own lines on (what config.yaml holds verbatim)."""
    lines = sample_path(name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  "))
    return "\n".join(lines[start:]).rstrip() + "\n"


def _undocumented(struct: type[msgspec.Struct], raw: dict[str, Any], text: str, where: str) -> list[str]:
    """Fields neither set in the sample nor shown commented out (allowed for unset, None, only)."""
    missing = []
    for info in msgspec.structs.fields(struct):
        key = info.encode_name
        if key in raw:
            nested = info.type if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct) \
                else None
            if nested is not None and isinstance(raw[key], dict):
                missing += _undocumented(nested, raw[key], text, f"{where}.{key}")
            continue
        commented = re.search(rf"^\s*#\s*{re.escape(key)}(_file)?:", text, re.MULTILINE)
        if info.default is not None or not commented:
            missing.append(f"{where}.{key}")
    return missing


def check_sample(name: str) -> None:
    spec = STAGES[name]
    assert spec.config is not None
    path = sample_path(name)
    text = path.read_text()
    raw = yaml.safe_load(text)
    assert list(raw) == [spec.kind.value] and list(raw[spec.kind.value]) == [name], \
        f"{path} holds exactly {spec.qualified}"
    section = raw[spec.kind.value][name]
    # Decodes, through the same loader as config.yaml, to exactly the defaults.
    decoded = parse(raw, source=str(path), env={}).stage_config(name)
    assert decoded == spec.config(), f"{path} documents a value that is not the default"
    assert not _undocumented(spec.config, section, text, spec.qualified), \
        f"{path} does not document {_undocumented(spec.config, section, text, spec.qualified)}"
    # config.yaml holds the same text, comments included.
    shipped = (ROOT / "config.yaml").read_text()
    assert section_text(name) in shipped, f"config.yaml's {spec.qualified} differs from {path}"
    assert load(ROOT / "config.yaml", env={}).stage_config(name) == decoded
