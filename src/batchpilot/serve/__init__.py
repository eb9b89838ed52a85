"""``batchpilot serve``: a batched HTTP model server (extra ``[serve]``).

`app` turns a batch function or a model class into an ASGI app: every concurrent
``POST /predict`` is batched by the online engine (`batchpilot.Batcher`), with
``/health``, ``/ready``, ``/metrics`` (Prometheus), ``/stats`` and a live dashboard
at ``/``. `run` serves it under uvicorn with graceful drain on SIGTERM and
optional worker processes. See ``docs/serve.md``.

    >>> from batchpilot import serve
    >>> class Model:
    ...     def setup(self):               # once per worker process
    ...         self.weights = 2
    ...     def predict(self, batch):      # a list of inputs -> one output each
    ...         return [self.weights * x for x in batch]
    >>> application = serve.app(Model, max_batch_size=64, timeout=2.0)
"""

from __future__ import annotations

try:
    import orjson  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "batchpilot.serve needs uvicorn, orjson and prometheus-client (the serve extra); "
        "install them with: pip install uvicorn httptools uvloop orjson prometheus-client"
    ) from _missing

from .._core.exports import publish
from .app import DEFAULT_MAX_BODY_BYTES, PRIORITY_HEADER, TIMEOUT_HEADER, ServeApp, app
from .embeddings import Embedder
from .model import Model, PredictInterrupted, TargetError, load_model
from .server import run, serve_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "PRIORITY_HEADER",
    "TIMEOUT_HEADER",
    "Embedder",
    "Model",
    "PredictInterrupted",
    "ServeApp",
    "TargetError",
    "app",
    "load_model",
    "run",
    "serve_app",
]

publish(__name__, globals(), __all__)
