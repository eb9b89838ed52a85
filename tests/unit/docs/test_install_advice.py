"""Install advice says one thing everywhere: batchpilot is not on PyPI (README), so no
page and no message of the package tells the user to ``pip install batchpilot[...]``
from PyPI. An install line names batchpilot the way the README installs it (a direct
``batchpilot[extra] @ URL`` reference) or only the missing distribution."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: ``pip install batchpilot[x]`` or ``pip install 'batchpilot[x]'``, not followed by ``@ URL``.
PYPI_FORM = re.compile(r"pip install\s+(?:-\S+\s+)*['\"]?batchpilot\[[^\]]*\](?!\s*@)")


def sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return files + sorted((ROOT / "src").rglob("*.py"))


def test_the_readme_says_batchpilot_is_not_on_pypi() -> None:
    assert "batchpilot is not on PyPI" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_pattern_tells_pypi_advice_from_the_readme_form() -> None:
    assert PYPI_FORM.search("hint: pip install 'batchpilot[io]'")
    assert PYPI_FORM.search("pip install batchpilot[demo,db]")
    assert not PYPI_FORM.search('pip install "batchpilot[io] @ git+https://host/batchpilot.git"')
    assert not PYPI_FORM.search('pip install "/path/to/batchpilot[io]"')
    assert not PYPI_FORM.search("pip install pyarrow")


def test_no_page_and_no_message_recommends_installing_batchpilot_from_pypi() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PYPI_FORM.search(line)
    ]
    assert found == []
