"""Column types of CSV/TSV inputs: given by ``--schema``, else inferred.

Inference asks pyarrow's CSV reader for the types of the first block (1 MiB) of
the file; the scan of the whole file then widens a column whose later values do
not fit (int -> float -> str, bool -> str), so every record of a run gets the
same types. Without pyarrow every column stays a string. An empty field of a
typed column is None; of a string column, "".

A schema is ``NAME:TYPE[,NAME:TYPE...]`` with the types ``int``, ``float``,
``bool`` and ``str``; ``*:TYPE`` sets every column not named (``*:str`` turns
inference off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = [
    "TYPES",
    "ColumnTypes",
    "SchemaError",
    "converter",
    "infer_types",
    "parse_schema",
    "resolve_types",
    "widen",
]

TYPES = ("int", "float", "bool", "str")
#: Column name -> type name.
ColumnTypes = dict[str, str]
_TRUE = frozenset({"true", "True", "TRUE", "1"})
_FALSE = frozenset({"false", "False", "FALSE", "0"})
_INFER_BYTES = 1 << 20


class SchemaError(ValueError):
    """A ``--schema`` that cannot be parsed or names columns the input lacks."""


def parse_schema(spec: str) -> ColumnTypes:
    """Parse ``NAME:TYPE,...`` (``*`` for every other column) into a mapping."""
    types: ColumnTypes = {}
    for part in spec.split(","):
        name, sep, kind = part.strip().rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise SchemaError(
                f"bad --schema entry {part.strip()!r}: expected NAME:TYPE with TYPE one of "
                f"{', '.join(TYPES)}"
            )
        if name in types:
            raise SchemaError(f"--schema gives column {name!r} twice")
        types[name] = kind
    return types


def _to_bool(text: str) -> bool | None:
    if text == "":
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a bool: {text!r}")


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text == "" else parse(text)

    return convert


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": _nullable(int),
    "float": _nullable(float),
    "bool": _to_bool,
}


def converter(kind: str) -> Callable[[str], Any] | None:
    """The function turning a field into a value of ``kind``; None for ``str``."""
    return _CONVERTERS.get(kind)


def widen(kind: str, text: str) -> str:
    """The narrowest type at least as wide as ``kind`` that holds ``text``."""
    for candidate in ("int", "float") if kind == "int" else ():
        try:
            _CONVERTERS[candidate](text)
        except ValueError:
            continue
        return candidate
    return "str"


def _arrow_kind(arrow_type: Any) -> str:
    import pyarrow.types as pat

    if pat.is_integer(arrow_type):
        return "int"
    if pat.is_floating(arrow_type):
        return "float"
    if pat.is_boolean(arrow_type):
        return "bool"
    return "str"


def infer_types(stream: IO[bytes], delimiter: str) -> ColumnTypes:
    """Types pyarrow infers from the first block of a CSV stream; {} without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:  # pragma: no cover - pyarrow is installed in the dev venv
        return {}
    head = stream.read(_INFER_BYTES)
    if len(head) == _INFER_BYTES:  # cut at a line end, never inside a record's last line
        head = head[: head.rfind(b"\n") + 1] or head
    try:
        table = pacsv.read_csv(
            pa.BufferReader(head),
            # one block for the whole head, so a row of any size up to it is read
            read_options=pacsv.ReadOptions(block_size=max(len(head), 1)),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=True,
                invalid_row_handler=_skip_row,  # a malformed line does not untype the file
            ),
            convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # the scan reports malformed lines itself
        return {}
    return {field.name: _arrow_kind(field.type) for field in table.schema}


def _skip_row(row: Any) -> str:
    return "skip"


def resolve_types(header: Sequence[str], schema: ColumnTypes, inferred: ColumnTypes) -> ColumnTypes:
    """Each column's type: the schema's, else the schema's ``*``, else the inferred one."""
    unknown = sorted(set(schema) - set(header) - {"*"})
    if unknown:
        raise SchemaError(
            f"--schema names columns the input does not have: {unknown} (columns: {list(header)})"
        )
    default = schema.get("*")
    return {name: schema.get(name) or default or inferred.get(name, "str") for name in header}
