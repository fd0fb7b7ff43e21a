"""replay serve's /docs page and its errors in the API's words (issue 19, items 13 and 15),
on a real uvicorn over loopback and a real DuckDB file."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ERAS, run_cli
from test_serve import TOKEN, Live, live_server

from replay.service import ServiceConfig
from replay.service.apidocs import render_docs
from replay.service.apiwords import api_words


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("docs") / "docs.duckdb"
    res = run_cli("ingest", ERAS / "v5.15.txt", "--name", "small", "--db", db, "-q")
    assert res.code == 0, res.err
    with live_server(ServiceConfig(db=db, token=TOKEN), token=TOKEN) as lv:
        yield lv


class _Tags(HTMLParser):
    """Every tag and every URL-like attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("href", "src", "action") and v]


def test_docs_page_is_served_from_the_package(live: Live) -> None:
    import httpx

    # no token needed to read the reference (the API under /api still wants one)
    r = httpx.get(f"{live.url}/docs", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    tags = _Tags()
    tags.feed(page)
    # nothing to load: no script, font, image, frame or stylesheet link; links stay on the page
    assert not tags.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "@import" not in page and "@font-face" not in page and "url(" not in page
    assert all(u.startswith("#") or u == "/openapi.json" for u in tags.urls), tags.urls
    # every operation and schema of the served OpenAPI schema is on the page
    schema = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    for path, item in schema["paths"].items():
        for method in item:
            anchor = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{method}-{path}").strip("-")
            assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page, (method, path)
            assert html.escape(item[method]["summary"]) in page
    for name in schema["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    # the run request's fields with their constraints and defaults
    run = page[page.index('id="schema-RunRequest"') :]
    run = run[: run.index("</section>")]
    assert "<code>every</code>" in run and "≥ 1" in run and "default <code>1</code>" in run
    assert "one of: <code>empty</code>, <code>observed</code>" in run
    assert live.client.get("/docs").text == page  # the same page for a token holder
    assert httpx.get(f"{live.url}/api/traces", timeout=30).status_code == 401


def test_render_docs_escapes_what_the_schema_says() -> None:
    schema = {
        "openapi": "3.1.0",
        "info": {"title": "t<script>", "version": "1"},
        "paths": {
            "/a/{x}": {
                "get": {
                    "summary": "<b>s</b>",
                    "description": "uses ``x`` <i>",
                    "parameters": [
                        {
                            "name": "x",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "maximum": 10},
                        }
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    page = render_docs(schema)
    assert "<script>" not in page and "<b>s</b>" not in page and "<i>" not in page
    assert "t&lt;script&gt;" in page and "uses <code>x</code> &lt;i&gt;" in page
    assert "≤ 10" in page and '<span class="req">required</span>' in page


def test_api_words() -> None:
    assert api_words(
        "--start observed takes the zone and its contents from the capture: it cannot be "
        "combined with --fill-from-snapshot or --zone-pages"
    ) == (
        "start observed takes the zone and its contents from the capture: it cannot be "
        "combined with fill_from_snapshot or zone_pages"
    )
    assert api_words("the trace has no zone: pass --zone-pages N") == (
        "the trace has no zone: pass zone_pages"
    )
    assert api_words("no run 9 (replay runs lists them)") == "no run 9 (GET /api/runs lists them)"
    # options the API does not take stay as the command line spells them
    assert api_words("--checkpoint-every must be 0 (none) or more") == (
        "--checkpoint-every must be 0 (none) or more"
    )


def test_errors_speak_the_apis_words(live: Live) -> None:
    r = live.client.get("/api/queries/failures_by_order")
    assert r.status_code == 400
    msg = r.json()["error"]
    assert "?run=VALUE" in msg and "--" not in msg, msg
    r = live.client.get("/api/queries/failures_by_order", params={"run": "x"})
    assert r.status_code == 400 and "'run' takes an integer" in r.json()["error"]
    # a run that does not exist is a 404 naming the endpoint that lists runs
    r = live.client.get("/api/queries/failures_by_order", params={"run": 999})
    assert r.status_code == 404 and "GET /api/runs" in r.json()["error"]
    # a job's error from the core names the request's fields, not the CLI's options
    r = live.client.post(
        "/api/jobs/run", json={"trace": "small", "start": "observed", "fill_from_snapshot": True}
    )
    assert r.status_code == 202, r.text
    view = live.job(r.json())
    assert view["status"] == "failed"
    err = view["error"]["error"]
    assert "fill_from_snapshot" in err and "start observed" in err and "--" not in err, err
    assert view["error"]["type"] == "UsageError"


def test_cli_keeps_its_own_words(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    assert run_cli("ingest", ERAS / "v5.15.txt", "--name", "small", "--db", db, "-q").code == 0
    res = run_cli("query", "failures_by_order", "--db", db)
    assert res.code == 2 and "--param run=VALUE" in res.err
