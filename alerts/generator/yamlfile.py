"""YAML that people read: key order kept, multi-line strings as `|` blocks, lists indented."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:  # noqa: ARG002
        # Indent list items under their key, as hand-written Prometheus files do.
        super().increase_indent(flow=flow, indentless=False)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:  # noqa: ANN401 -- any YAML-shaped value
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        width=2**16,  # never fold a line: folded templates are hard to read
        allow_unicode=True,
        default_flow_style=False,
    )
