"""The page draws with plotly.js's cartesian partial bundle (``assets/``): its version and trace types.

The full ``plotly.min.js`` is 4.8 MB of script the browser must evaluate before the first
figure; the cartesian bundle is 1.5 MB. It holds only some trace types, so every trace type
the package draws must be one it registers, and it must be the plotly.js version plotly.py
writes figures for.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.offline import get_plotlyjs_version

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "assets" / "plotly-cartesian.min.js"


def _bundle_text() -> str:
    return BUNDLE.read_text(encoding="utf-8")


def _traces_drawn() -> dict[str, list[str]]:
    """``{trace type: [where]}`` for every ``go.<Trace>`` the package names (calls and references)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "repgeom").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "go":
                cls = getattr(go, node.attr, None)
                if isinstance(cls, type) and issubclass(cls, BaseTraceType):
                    found.setdefault(cls().type, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for match in re.finditer(r"""["']type["']\s*:\s*["'](scatter\w*|heatmap\w*|bar\w*|\w+3d|splom|parcoords|sankey|table)["']""",
                                 path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1), []).append(f"{path.relative_to(ROOT)} (a trace dict)")
    return found


def test_the_bundle_is_the_plotly_js_version_plotly_py_writes_for() -> None:
    header = _bundle_text()[:300]
    assert re.search(r"plotly\.js \(cartesian - minified\) v(\S+)", header).group(1) == get_plotlyjs_version()


def test_every_trace_type_the_package_draws_is_in_the_bundle() -> None:
    registered = set(re.findall(r'moduleType:"trace",name:"(\w+)"', _bundle_text()))
    assert {"scatter", "heatmap", "bar"} <= registered and "scattergl" not in registered  # the parse finds what it should
    drawn = _traces_drawn()
    assert {"scatter", "heatmap", "bar"} <= set(drawn)  # the scan finds what the package draws
    missing = {t: where for t, where in drawn.items() if t not in registered}
    assert not missing, f"trace types outside plotly.js's cartesian bundle (use the full bundle or another trace): {missing}"
