"""Architecture rules a reviewer would otherwise check by hand.

Stages know nothing of NATS, the config file or the environment: the runtime
binds them (style guide, "A stage is plain async code").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGE_PACKAGES = ("producers", "enrichers", "sinks", "schemas")
FORBIDDEN_IMPORTS = ("nats", "lanscope.runtime.bus", "lanscope.runtime.runner", "lanscope.runtime.consume",
                     "lanscope.runtime.delivery", "lanscope.runtime.fastpath", "lanscope.runtime.puller",
                     "lanscope.runtime.stagerun", "lanscope.config",
                     "lanscope.cli", "lanscope.commands")


def _stage_modules() -> list[Path]:
    return sorted(p for pkg in STAGE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _stage_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_stages_do_not_import_nats_or_config(path: Path) -> None:
    bad = {name for name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IMPORTS)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _stage_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_stages_do_not_read_the_environment(path: Path) -> None:
    source = path.read_text()
    assert "os.environ" not in source and "os.getenv" not in source, path


def test_schemas_import_only_msgspec_and_the_standard_library() -> None:
    import sys

    for path in (ROOT / "schemas").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in {"msgspec", "schemas"} or top in sys.stdlib_module_names, (path, name)


def test_only_the_runtime_imports_nats() -> None:
    for path in (ROOT / "lanscope").rglob("*.py"):
        if "runtime" in path.parts or path.parent.name == "commands":
            continue
        assert not any(n == "nats" or n.startswith("nats.") for n in _imports(path)), path
