"""EngineOptions: one list of engine settings, checked once, behind Batcher, batch and Engine."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from batchpilot import Fixed, RetryPolicy
from batchpilot._engine.engine import Engine
from batchpilot._engine.options import EngineOptions
from batchpilot.batching import Batcher, batch
from batchpilot.errors import ConfigError

pytestmark = pytest.mark.timeout(10)

OPTION_NAMES = [field.name for field in dataclasses.fields(EngineOptions)]


def ident(items: list[Any]) -> list[Any]:
    return items


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_batch_size", 0, ValueError),
        ("max_batch_size", 2.5, TypeError),
        ("max_batch_size", True, TypeError),
        ("max_concurrent_batches", 0, ValueError),
        ("max_queue_size", -1, ValueError),
        ("priority_levels", "2", TypeError),
        ("max_wait", -0.1, ValueError),
        ("max_wait", float("nan"), ValueError),
        ("max_wait", "5ms", TypeError),
        ("min_batch_interval", -1, ValueError),
        ("item_timeout", -1, ValueError),
        ("item_timeout", False, TypeError),
        ("latency_target", 0, ValueError),
        ("max_batch_bytes", 0, ValueError),
        ("batch_size_fn", 3, TypeError),
        ("retry", 3, TypeError),
        ("on_error", "ignore", ValueError),
        ("placement", "gpu", ValueError),
        ("controller", object(), TypeError),
    ],
)
def test_a_bad_value_raises_naming_its_field(field: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=field):
        EngineOptions(**{field: value})


@pytest.mark.parametrize(("value", "error"), [("zip", ValueError), (42, TypeError)])
def test_a_bad_collate_is_refused_when_the_options_are_made(value: Any, error: type) -> None:
    with pytest.raises(error, match="collate"):
        EngineOptions(collate=value)


def test_good_values_are_kept_and_the_options_are_frozen() -> None:
    retry = RetryPolicy(2, 0.0)
    options = EngineOptions(max_batch_size=8, max_wait=0, retry=retry, item_timeout=1.5)

    assert (options.max_batch_size, options.max_wait, options.retry) == (8, 0, retry)
    assert options.item_timeout == 1.5 and options.name is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_batch_size = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        EngineOptions(8)  # type: ignore[misc]  # keywords only


def test_batcher_and_batch_take_exactly_the_option_fields() -> None:
    parameters = inspect.signature(Batcher).parameters
    assert list(parameters) == ["fn", *OPTION_NAMES]
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in OPTION_NAMES)
    assert parameters["max_batch_size"].default == EngineOptions().max_batch_size
    with pytest.raises(ValueError, match="max_batch_size"):
        batch(max_batch_size=0)(ident)
    with pytest.raises(TypeError, match="bogus"):
        Batcher(ident, bogus=1)  # type: ignore[call-arg]


def test_a_batcher_is_named_after_its_function_unless_named() -> None:
    with Batcher(ident, collate="list") as unnamed, Batcher(ident, name=None) as none:
        assert unnamed.engine.name == none.engine.name == "ident"
    with Batcher(ident, name="scorer") as named:
        assert named.engine.name == "scorer"


def test_one_options_object_configures_engines(engines: list[Engine]) -> None:
    options = EngineOptions(max_batch_size=3, collate="list", controller=None, name="shared")
    first, second = Engine(ident, options), Engine(ident, options)
    engines += [first, second]

    assert first.max_batch_size == second.max_batch_size == 3
    assert first.name == "shared" and isinstance(first.controller, Fixed)
    assert first.controller is not second.controller  # each engine its own default controller
    assert first.call(7) == 7


def test_an_engine_takes_options_or_keywords_not_both(engines: list[Engine]) -> None:
    by_keywords = Engine(ident, max_batch_size=5, collate="list")
    engines.append(by_keywords)
    assert by_keywords.max_batch_size == 5 and by_keywords.name == ""
    with pytest.raises(TypeError, match="not both"):
        Engine(ident, EngineOptions(), max_batch_size=5)
    with pytest.raises(TypeError, match="callable"):
        Engine(42, EngineOptions())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_target", "x"),
        ("latency_target", True),
        ("latency_target", float("nan")),
        ("max_wait", float("inf")),
        ("min_batch_interval", float("inf")),
        ("min_batch_interval", float("nan")),
        ("item_timeout", float("nan")),
        ("max_batch_bytes", True),
        ("max_batch_size", 2.0),
    ],
)
def test_a_hostile_value_is_a_config_error_naming_its_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        EngineOptions(**{field: value})


def test_infinity_means_no_limit_where_a_limit_is_optional() -> None:
    options = EngineOptions(item_timeout=float("inf"), latency_target=float("inf"))
    assert options.item_timeout == float("inf") and options.latency_target == float("inf")


def test_the_engine_setters_use_the_same_checks() -> None:
    engine = Engine(ident, collate="list")
    try:
        with pytest.raises(ConfigError, match="max_batch_size"):
            engine.set_max_batch_size(True)
        with pytest.raises(ConfigError, match="max_wait"):
            engine.set_max_wait(float("nan"))
        with pytest.raises(ConfigError, match="timeout"):
            engine.close(timeout="1")  # type: ignore[arg-type]
    finally:
        engine.close()
