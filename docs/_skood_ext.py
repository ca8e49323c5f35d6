"""Two directives that read parameter defaults and presets from the installed classes.

``.. skood-parameters:: SemSADDetector`` renders a table of the parameters named in its
content (one ``name: when to change it`` line each) with their current defaults, and
``.. skood-presets:: SemSADDetector`` the parameters each preset of ``from_preset`` sets,
beside the defaults. The values come from ``get_params()`` at build time, so the pages
cannot drift from the code.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

import skood


def _fmt(v: object) -> str:
    return f"``{v!r}``"


def _table(head: list[str], rows: list[list[str]], widths: str) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [head, *rows]:
        out.append("   * - " + row[0])
        out.extend("     - " + c for c in row[1:])
    return out


class _Base(Directive):
    required_arguments = 1
    has_content = True

    def _render(self, lines: list[str]) -> list[nodes.Node]:
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source="skood-ext"), self.content_offset, node)
        return node.children


class ParametersDirective(_Base):
    """The parameters that matter, with their defaults read from the class."""

    def run(self) -> list[nodes.Node]:
        cls = getattr(skood, self.arguments[0])
        defaults = cls().get_params()
        rows = []
        for line in self.content:
            if not line.strip():
                continue
            name, _, text = line.partition(":")
            name = name.strip()
            if name not in defaults:
                raise self.error(f"{cls.__name__} has no parameter {name!r}")
            rows.append([f"``{name}``", _fmt(defaults[name]), text.strip()])
        return self._render(_table(["parameter", "default", "when to change it"], rows,
                                   "20 20 60"))


class PresetsDirective(_Base):
    """Every preset of ``from_preset`` as the parameters it changes."""

    def run(self) -> list[nodes.Node]:
        cls = getattr(skood, self.arguments[0])
        defaults = cls().get_params()
        names = sorted(cls._presets)  # the preset registry (docs tooling only)
        if not names:
            return self._render([f"``{cls.__name__}`` has no preset."])
        presets = {n: cls.from_preset(n).get_params() for n in names}
        changed = [k for k in defaults if any(p[k] != defaults[k] for p in presets.values())]
        rows = [[f"``{k}``", _fmt(defaults[k]), *(_fmt(presets[n][k]) for n in names)]
                for k in changed]
        head = ["parameter", "default", *(f'``from_preset("{n}")``' for n in names)]
        return self._render(_table(head, rows, " ".join(["25"] * len(head))))


def setup(app):  # noqa: D103
    app.add_directive("skood-parameters", ParametersDirective)
    app.add_directive("skood-presets", PresetsDirective)
    return {"parallel_read_safe": True}
