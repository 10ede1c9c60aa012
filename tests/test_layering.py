"""The shape of the house: numerics and figures never import Dash; numerics never import Plotly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "repgeom"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


NUMERICS = sorted((PKG / "core").rglob("*.py")) + [PKG / n for n in ("pipeline.py", "export.py", "cli.py", "registry.py", "settings.py")]


@pytest.mark.parametrize("path", NUMERICS, ids=lambda p: str(p.relative_to(PKG)))
def test_numerics_import_neither_dash_nor_plotly(path):
    assert not _imports(path) & {"dash", "plotly", "flask"}


@pytest.mark.parametrize("path", sorted((PKG / "figures").glob("*.py")) + [PKG / "ui" / "state.py", PKG / "ui" / "views.py"], ids=lambda p: p.name)
def test_figures_and_view_logic_do_not_import_dash(path):
    assert "dash" not in _imports(path)


def test_component_ids_are_only_spelled_in_ids_module():
    import re

    from repgeom.ui.ids import ID

    ids = {v for k, v in vars(ID).items() if k.isupper()}
    for path in (PKG / "ui").glob("*.py"):
        if path.name == "ids.py":
            continue
        literals = set(re.findall(r'id="([^"]+)"', path.read_text()))
        assert not literals & ids, (path.name, literals & ids)


def test_only_the_settings_module_reads_the_environment():
    import re

    readers = set()
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if re.search(r"os\.environ\.get|os\.getenv|os\.environ\[", text):
            readers.add(str(path.relative_to(PKG)))
    # gunicorn_conf *writes* thread counts for the worker's libraries (os.environ[...] = ...)
    assert readers <= {"settings.py", "gunicorn_conf.py"}, readers
    assert not re.search(r"os\.environ\.get|os\.getenv", (PKG / "gunicorn_conf.py").read_text())
