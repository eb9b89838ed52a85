"""The batch-size controller a `BatchProcessorConfig` asks for (fixed, AIMD or target latency)."""

from __future__ import annotations

from .._core.sizing import AIMD, Fixed, TargetLatency
from .config import BatchProcessorConfig

__all__ = ["ConfigSizeController"]


class ConfigSizeController:
    """The batch-size controller a config asks for, with the seed's manual override."""

    def __init__(self, config: BatchProcessorConfig) -> None:
        self._config = config
        self._inner: Fixed | AIMD | TargetLatency
        lo, hi, initial = config.min_batch_size, config.max_batch_size, config.initial_batch_size
        if not config.adaptive:
            self._inner = Fixed(initial)
        elif config.latency_target is None:
            self._inner = AIMD(initial, lo, hi)
        else:
            self._inner = TargetLatency(config.latency_target, lo, hi, initial)

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        if ok or self._config.reduce_batch_on_failure:
            self._inner.observe(batch_size, duration, ok)

    def next_size(self) -> int:
        return self._inner.next_size()

    def set_size(self, size: int) -> None:
        """Override the current size; a fixed size becomes the new fixed size."""
        if isinstance(self._inner, Fixed):
            self._inner.set_bounds(size, size)
        else:
            self._inner.set_size(size)

    def shrink(self) -> None:
        """Halve an adaptive size (memory pressure); a fixed size stays."""
        if not isinstance(self._inner, Fixed):
            self._inner.set_size(max(1, self._inner.size // 2))

    def __repr__(self) -> str:
        return repr(self._inner)
