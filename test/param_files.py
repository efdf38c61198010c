"""Test helper: the parameters a parameter file names, set or (robot-dependent ones) only in a comment."""

from __future__ import annotations

from pathlib import Path
import re

import yaml


def commented_parameters(path: Path) -> dict[str, set[str]]:
    """Per node section, the parameters a file names only in a comment (``    # name: [...]``, robot-dependent)."""
    found: dict[str, set[str]] = {}
    section = None
    for line in path.read_text().splitlines():
        if re.match(r'^[a-z_]+:', line):
            section = line.split(':')[0]
        elif section and (match := re.match(r'^\s{4}# ([a-z_][a-z0-9_.]*):', line)):
            found.setdefault(section, set()).add(match.group(1))
    return found


def file_parameters(path: Path) -> dict[str, set[str]]:
    """Per node section, every parameter the file sets or names in a comment."""
    sections = yaml.safe_load(path.read_text())
    commented = commented_parameters(path)
    return {node: set(body['ros__parameters']) | commented.get(node, set()) for node, body in sections.items()}
