"""``batchpilot serve MODULE:ATTR``: serve a batch function or a model class over HTTP.

A thin layer on `batchpilot.serve.run` (extra ``[serve]``): parses the options,
loads nothing itself (each worker process imports the target), and returns the
server's exit code: 0 after a graceful drain on SIGTERM/SIGINT, 1 when the model's
``setup()`` failed or a worker died, 2 for bad usage or a target that cannot be
served.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import (
    CliError,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
)

__all__ = ["EMBEDDINGS_TARGET", "add_command"]

EMBEDDINGS_TARGET = "batchpilot.serve.embeddings:Embedder"
"""What ``--embeddings MODEL_DIR`` serves (with the folder as its ``model_dir``)."""


def add_command(commands: Any) -> None:
    """Add the ``serve`` subparser to ``commands`` (an argparse subparsers action)."""
    serve = commands.add_parser(
        "serve",
        help="serve MODULE:ATTR over HTTP with dynamic batching",
        description="Serve a batch function (a list of inputs -> a list of outputs) or a "
        "class with setup()/predict(batch) at POST /predict; every concurrent request is "
        "batched. Also GET /health, /ready, /metrics (Prometheus), /stats and a live "
        "dashboard at /. Prints the address once listening. SIGTERM drains (at most "
        "--drain-timeout) and exits 0.",
    )
    _add_model_arguments(serve)
    _add_server_arguments(serve)
    _add_cost_options(serve)
    _add_embeddings_options(serve)
    serve.set_defaults(handler=_serve_command)


def _add_model_arguments(serve: argparse.ArgumentParser) -> None:
    """What to serve, where, and how requests are batched."""
    serve.add_argument(
        "target",
        metavar="MODULE:ATTR",
        nargs="?",
        help="the batch function or model class (or --embeddings MODEL_DIR)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (8000; 0: any free)"
    )
    serve.add_argument(
        "--max-batch-size", type=positive_int, default=64, metavar="N", help="items per batch (64)"
    )
    serve.add_argument(
        "--max-wait",
        type=positive_float,
        default=0.005,
        metavar="S",
        help="upper bound in seconds on waiting for a fuller batch (0.005)",
    )
    serve.add_argument(
        "--max-queue",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="requests that may wait; more are refused with 503 at once (10000)",
    )


def _add_server_arguments(serve: argparse.ArgumentParser) -> None:
    """Worker processes, deadlines, limits and logging."""
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes, each with its own batcher and setup() (1)",
    )
    serve.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="request deadline in seconds, then 504 (default: none; "
        "a request may set its own with X-Request-Timeout)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="after SIGTERM, seconds to finish what is in flight before closing what is "
        "left and exiting 0 (default: --timeout + 5, or 30 without --timeout)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=None,
        metavar="N",
        help="a larger request body is refused with 413 before it is read (16 MiB)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (warning)",
    )


def _add_embeddings_options(serve: Any) -> None:
    group = serve.add_argument_group(
        "embeddings",
        "serve a local Hugging Face encoder at POST /v1/embeddings, the OpenAI shape "
        "(extra embeddings; docs/tokens.md)",
    )
    group.add_argument(
        "--embeddings",
        metavar="MODEL_DIR",
        help="a folder written by save_pretrained (tokenizer and model), served instead "
        "of MODULE:ATTR; nothing is downloaded",
    )
    group.add_argument(
        "--device", default="cpu", help="where the encoder runs: cpu, cuda or cuda:N (cpu)"
    )
    group.add_argument(
        "--no-normalize",
        action="store_true",
        help="return embeddings as pooled, not scaled to unit length",
    )


def _add_cost_options(serve: Any) -> None:
    group = serve.add_argument_group(
        "batches by cost",
        "size batches by what their items cost, the model's cost(self, item) hook (token "
        "counts for --embeddings); docs/tokens.md",
    )
    group.add_argument(
        "--max-batch-cost",
        "--max-batch-tokens",
        dest="max_batch_cost",
        type=non_negative_float,
        default=None,
        metavar="N",
        help="the budget of one batch in cost units (padded tokens for --embeddings); an "
        "item over it runs alone. Needs a model with cost(); --max-batch-size still "
        "bounds the count (default: none, --embeddings 4096; 0: count items only)",
    )
    group.add_argument(
        "--padded",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a batch costs its largest item's cost times its size, as when every row is "
        "padded to the longest; --no-padded: the sum (default: --no-padded, "
        "--embeddings --padded)",
    )
    group.add_argument(
        "--sort-window",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="waiting items that may be regrouped by cost, so that like lengths share a "
        "batch (default: 0, first in, first out; --embeddings 256)",
    )


def _target(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The target string and the extra ServeApp options of ``args``."""
    if args.embeddings is None:
        if args.target is None:
            raise CliError("serve needs MODULE:ATTR, or --embeddings MODEL_DIR")
        return args.target, _cost_options(args, budget=0, padded=False, sort_window=0)
    if args.target is not None:
        raise CliError("give MODULE:ATTR or --embeddings MODEL_DIR, not both")
    folder = Path(args.embeddings)
    if not (folder / "config.json").is_file():
        raise CliError(f"--embeddings {folder}: not a model folder (no config.json in it)")
    options: dict[str, Any] = {
        "target_options": {
            "model_dir": str(folder.resolve()),
            "device": args.device,
            "normalize": not args.no_normalize,
        },
        # On a GPU two batches are in flight: one runs the model (under Embedder's
        # lock) while the next is padded and copied on the other worker thread. On a
        # CPU the model takes every core, and the next batch grows while it waits.
        "max_concurrent_batches": 2 if args.device.startswith("cuda") else 1,
    }
    options.update(_cost_options(args, budget=4096, padded=True, sort_window=256))
    return EMBEDDINGS_TARGET, options


def _cost_options(
    args: argparse.Namespace, *, budget: float, padded: bool, sort_window: int
) -> dict[str, Any]:
    """The cost options of ``args`` (the defaults given for those not set), or none when
    the budget is 0; `--padded` or a `--sort-window` above 0 without a budget is a usage
    error (``--sort-window 0``, first in first out, is what counting items does anyway)."""
    max_batch_cost = budget if args.max_batch_cost is None else args.max_batch_cost
    if not max_batch_cost:
        if args.padded is not None or args.sort_window:
            raise CliError("--padded and --sort-window size batches by cost: give --max-batch-cost")
        return {}
    return {
        "max_batch_cost": max_batch_cost,
        "padded": padded if args.padded is None else args.padded,
        "sort_window": sort_window if args.sort_window is None else args.sort_window,
    }


def _serve_command(args: argparse.Namespace) -> int:
    try:
        from .. import serve
    except ImportError as exc:
        raise CliError(str(exc)) from None
    target, extra = _target(args)
    try:
        if args.embeddings is None:  # fail fast on a bad target, before binding the port
            model = serve.load_model(target)
            if "max_batch_cost" in extra and model.cost is None:
                raise CliError(
                    f"--max-batch-cost needs a model that says what an item costs: {target} "
                    "has no cost(self, item) method (docs/tokens.md)"
                )
        return serve.run(
            target,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            max_batch_size=args.max_batch_size,
            max_wait=args.max_wait,
            max_queue=args.max_queue,
            timeout=args.timeout,
            drain_timeout=args.drain_timeout,
            max_body_bytes=args.max_body_bytes or serve.DEFAULT_MAX_BODY_BYTES,
            **extra,
        )
    except serve.TargetError as exc:
        raise CliError(str(exc)) from None
