"""Every package's `__init__.py` is its public face: it only re-exports (issue 24 item 7).

A face may hold its docstring, imports (also inside ``try``/``if`` guards, such as
serve's check for its optional dependencies), ``__all__`` (and the top level's
``__version__``) and the `publish` call;
classes, functions and other statements live in the package's named modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import batchpilot

SRC = Path(batchpilot.__file__).resolve().parent
FACES = sorted(path.relative_to(SRC).as_posix() for path in SRC.rglob("__init__.py"))
FACE_NAMES = {"__all__", "__version__"}  # the only names a face may assign


def _is_face_statement(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Expr):  # the docstring, or publish(__name__, globals(), __all__)
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return True
        return (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "publish"
        )
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) and t.id in FACE_NAMES for t in targets)
    if isinstance(node, ast.Try):  # an import guard: imports, and a clear ImportError
        handlers = [stmt for handler in node.handlers for stmt in handler.body]
        return all(_is_face_statement(stmt) for stmt in node.body) and all(
            isinstance(stmt, ast.Raise) for stmt in handlers
        )
    if isinstance(node, ast.If):  # e.g. if TYPE_CHECKING: imports
        return all(_is_face_statement(stmt) for stmt in node.body + node.orelse)
    return False


@pytest.mark.parametrize("face", FACES)
def test_a_package_init_only_re_exports(face: str) -> None:
    tree = ast.parse((SRC / face).read_text(encoding="utf-8"))
    code = [
        f"line {node.lineno}: {ast.dump(node)[:60]}"
        for node in tree.body
        if not _is_face_statement(node)
    ]
    assert code == [], f"{face} holds implementation"
