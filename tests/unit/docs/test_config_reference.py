"""docs/configuration.md is generated from the configuration classes and must stay current."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

DOCS = Path(__file__).resolve().parents[3] / "docs"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", DOCS / "gen_config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_matches_the_generator_output() -> None:
    generator = load_generator()
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert committed == generator.render(), (
        "docs/configuration.md is stale: run `python docs/gen_config_reference.py`"
    )


def test_every_field_of_every_documented_dataclass_has_a_row() -> None:
    generator = load_generator()
    text = generator.render()
    for target in generator.TARGETS:
        module = importlib.import_module(target.module)
        obj = getattr(module, target.name)
        if dataclasses.is_dataclass(obj):
            for item in dataclasses.fields(obj):
                assert f"| `{item.name}` |" in text, f"{target.name}.{item.name} missing"


def test_docstring_entries_read_google_style_fields() -> None:
    generator = load_generator()
    doc = """Summary line.

    Section:
        alpha: first line
            continues here.
        beta, gamma: shared text.

    Example:
        >>> not_a_field: 1
    """
    import inspect

    assert generator.docstring_entries(inspect.cleandoc(doc)) == {
        "alpha": "first line continues here.",
        "beta": "shared text.",
        "gamma": "shared text.",
    }


def test_fields_show_types_defaults_and_required_parameters() -> None:
    generator = load_generator()

    @dataclasses.dataclass
    class Example:
        """Example settings.

        Attributes:
            size: how many.
            tags: labels.
        """

        size: int = 3
        tags: list[str] = dataclasses.field(default_factory=list)

    def make(url: str, *, retries: int = 2) -> None:
        """Make one.

        Args:
            url: where.
            retries: how often.
        """

    assert generator.fields_of(Example) == [
        generator.Field("size", "int", "3", "how many."),
        generator.Field("tags", "list[str]", "list()", "labels."),
    ]
    assert generator.fields_of(make) == [
        generator.Field("url", "str", generator.REQUIRED, "where."),
        generator.Field("retries", "int", "2", "how often."),
    ]
