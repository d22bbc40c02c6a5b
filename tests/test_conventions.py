"""Architecture rules a reviewer would otherwise check by hand.

Stages know nothing of NATS, the config file or the environment: the runtime
binds them (style guide, "A stage is plain async code"). Every stage is a
folder with its Config and builder in stage.py, a README, a documented config
sample and tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGE_PACKAGES = ("producers", "enrichers", "sinks", "schemas")
FORBIDDEN_IMPORTS = ("nats", "lanscope.runtime.bus", "lanscope.runtime.runner", "lanscope.runtime.consume",
                     "lanscope.runtime.delivery", "lanscope.runtime.fastpath", "lanscope.runtime.puller",
                     "lanscope.runtime.stagerun", "lanscope.runtime.sinkbatches", "lanscope.runtime.topology",
                     "lanscope.config",
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


# ------------------------------------------------------------------ one stage, one folder


def _stage_ids() -> list[str]:
    from lanscope.runtime.topology import STAGES

    return [spec.qualified for spec in STAGES.values()]


@pytest.mark.parametrize("qualified", _stage_ids())
def test_every_stage_is_a_folder_with_its_config_sample_readme_and_tests(qualified: str) -> None:
    kind, name = qualified.split(".")
    folder = ROOT / kind / name
    for needed in ("stage.py", "README.md", "config.sample.yaml", "__init__.py"):
        assert (folder / needed).is_file(), f"{qualified}: no {needed}"
    tests = ROOT / "tests" / kind / name
    assert (tests / "test_config.py").is_file(), f"{qualified}: no tests/{kind}/{name}/test_config.py"
    assert len(list(tests.glob("test_*.py"))) >= 2, f"{qualified}: only config tests"


_TIME_WORDS = re.compile(r"timeout|interval|backoff|window|grace|refresh|reannounce|compact|flush|keep")


def _sections(struct: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
    found = [struct]
    for info in msgspec.structs.fields(struct):
        if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
            found += _sections(info.type)
    return found


@pytest.mark.parametrize("qualified", _stage_ids())
def test_every_stage_config_and_builder_live_in_its_stage_module(qualified: str) -> None:
    from lanscope.runtime.topology import resolve

    spec = resolve(qualified)
    assert spec.config is not None and spec.build is not None
    assert spec.config.__module__ == f"{qualified}.stage" and spec.config.__name__ == "Config"
    assert spec.build.__module__ == f"{qualified}.stage" and spec.build.__name__ == "build"
    first = msgspec.structs.fields(spec.config)[0]
    assert (first.name, first.default) == ("enabled", True), f"{qualified}: `enabled: bool = True` first"
    for section in _sections(spec.config):
        assert section.__struct_config__.forbid_unknown_fields, f"{qualified}: {section.__name__}"
        for info in msgspec.structs.fields(section):
            if _TIME_WORDS.search(info.name):
                assert info.name.endswith(("_ms", "_secs", "_days")), f"{qualified}.{info.name}: unit suffix"


def test_every_runtime_module_is_in_the_runtime_readme() -> None:
    readme = (ROOT / "lanscope/runtime/README.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)` \|", readme, re.MULTILINE))
    modules = {p.stem for p in (ROOT / "lanscope/runtime").glob("*.py") if p.stem != "__init__"}
    assert modules - listed == set(), "modules missing from lanscope/runtime/README.md"
    assert listed - modules == set(), "lanscope/runtime/README.md lists modules that do not exist"


MAX_LINES = 500   # a module past this holds more than one job: split it (issue 17)


def test_no_source_file_outgrows_one_job() -> None:
    sources = [p for pkg in (*STAGE_PACKAGES, "lanscope", "bench") for p in (ROOT / pkg).rglob("*.py")]
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in sources}
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    assert long == {}
