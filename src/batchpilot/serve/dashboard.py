"""The live dashboard at ``GET /``: a static page that polls ``/stats`` and draws charts
(with ``--workers N``: the sums over every worker, and a status per worker).

The chart library is uPlot (MIT, from the npm registry package ``uplot``), vendored
in ``static/`` so the page needs no network beyond the server itself (see
``static/VENDORED.md`` to refresh it).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = ["DASHBOARD_ROUTES", "Page"]


@dataclass(frozen=True)
class Page:
    """A static file served as is."""

    body: bytes
    content_type: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ((b"cache-control", b"max-age=3600"),)


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def _routes() -> dict[str, Page]:
    html = Page(_static("dashboard.html"), b"text/html; charset=utf-8", ())
    return {
        "/": html,
        "/dashboard": html,
        "/static/uPlot.iife.min.js": Page(
            _static("uPlot.iife.min.js"), b"text/javascript; charset=utf-8"
        ),
        "/static/uPlot.min.css": Page(_static("uPlot.min.css"), b"text/css; charset=utf-8"),
    }


DASHBOARD_ROUTES: dict[str, Page] = _routes()
"""Path -> page, read once from the package data."""
