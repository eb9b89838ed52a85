"""The quick start of docs/serve.md, as written, against a real ``batchpilot serve``:
the page's ``Model`` class saved as ``mymodel.py``, its serve command, and its
``curl`` request sent by an HTTP client; the reply is the one the page shows."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest


def parse_curl(line: str) -> tuple[str, str, dict[str, str], str | None]:
    """``curl [-s] [-X METHOD] [-H 'K: V'] [-d BODY] URL`` -> method, path, headers, body."""
    words = shlex.split(line, comments=True)
    assert words[0] == "curl", line
    method, headers, body, url = "GET", {}, None, ""
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            key, value = next(rest).split(":", 1)
            headers[key.strip()] = value.strip()
        elif word == "-d":
            body = next(rest)
            method = "POST" if method == "GET" else method
        elif word != "-s":
            url = word
    return method, "/" + url.split("://")[-1].split("/", 1)[1], headers, body


@pytest.mark.timeout(120)
def test_the_quick_start_answers_what_the_page_shows(
    serve: Any, doc_blocks: Any, tmp_path: Path
) -> None:
    blocks = doc_blocks("docs/serve.md")
    (model,) = [b for b in blocks if "class Model" in b.code and not b.skip]
    (start,) = [i for i, b in enumerate(blocks) if "batchpilot serve" in b.code]
    shown = blocks[start + 1]
    assert shown.lang == "text", shown.where
    (tmp_path / "mymodel.py").write_text(model.code, encoding="utf-8")

    command, *requests = blocks[start].code.strip().splitlines()
    words = shlex.split(command, comments=True)
    assert words[:2] == ["batchpilot", "serve"], command
    target, *options = words[2:]
    port = options.index("--port")
    del options[port : port + 2]  # the fixture listens on a free port
    server = serve(target, *options)  # cwd: tmp_path, where mymodel.py is
    (curl,) = requests
    method, path, headers, body = parse_curl(curl)
    assert (method, path) == ("POST", "/predict")
    reply = server.post(path, (body or "").encode(), headers=headers)
    assert reply.status == 200, reply.body
    assert reply.json() == json.loads(shown.code), (reply.body, shown.code)
