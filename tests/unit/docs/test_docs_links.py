"""Relative links in the docs pages written for the CLI, index and reference must resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGES = ["index.md", "cli.md", "migration.md", "configuration.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_point_to_existing_pages(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    targets = {t for t in LINK.findall(text) if "://" not in t}
    missing = sorted(t for t in targets if not (DOCS / t).exists())
    assert not missing, f"{page} links to missing {missing}"
