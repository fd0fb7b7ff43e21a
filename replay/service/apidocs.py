"""``GET /docs``: the API's reference, one HTML page made from its OpenAPI schema.

The page is rendered here, on the server, from ``app.openapi()`` (the schema
``/openapi.json`` serves): every operation with its parameters, request body
and responses, then every schema with its fields. It has no script, font or
image and loads nothing (its Content-Security-Policy forbids it), so it works
offline and behind a firewall, unlike FastAPI's Swagger UI, which fetches its
scripts from a CDN.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

DOCS_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_METHODS = ("get", "post", "put", "patch", "delete")
_REF = "#/components/schemas/"

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 1.5rem 4rem; color: #1d2330; background: #fff; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccd; }
h3 { margin: 2rem 0 .3rem; font-size: 1.05rem; }
code, .path { font-family: ui-monospace, monospace; font-size: .92em; }
.method { display: inline-block; min-width: 3.6rem; padding: .05rem .35rem; border-radius: 3px;
          color: #fff; font: bold .8rem ui-monospace, monospace; text-align: center; }
.get { background: #2f6f9f; } .post { background: #3f7f3f; } .delete { background: #a33; }
.put, .patch { background: #8a6d1f; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .25rem .6rem .25rem 0;
         border-bottom: 1px solid #e4e6ee; }
th { font-weight: 600; font-size: .85rem; color: #4a5060; }
.req { color: #a33; font-size: .8rem; } .muted { color: #5a6070; }
nav ul { columns: 2; padding-left: 1.2rem; } nav li { break-inside: avoid; }
p { margin: .3rem 0; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _prose(text: str | None) -> str:
    """A docstring as paragraphs; ``code`` and `code` become <code>."""
    if not text:
        return ""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        body = _e(" ".join(line.strip() for line in para.splitlines()))
        body = re.sub(r"``(.+?)``|`(.+?)`", lambda m: f"<code>{m[1] or m[2]}</code>", body)
        out.append(f"<p>{body}</p>")
    return "\n".join(out)


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _schema_link(ref: str) -> str:
    name = ref.removeprefix(_REF)
    return f'<a href="#schema-{_anchor(name)}"><code>{_e(name)}</code></a>'


def type_of(schema: Mapping[str, Any]) -> str:
    """A JSON schema's type as HTML: ``integer``, ``string | null``, ``array of X``,
    a link to a named schema, ``one of: a, b``."""
    if "$ref" in schema:
        return _schema_link(schema["$ref"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_of(s) for s in schema[key])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0])
    if "enum" in schema:
        return "one of: " + ", ".join(f"<code>{_e(v)}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{_e(schema['const'])}</code>"
    typ = schema.get("type")
    if isinstance(typ, list):
        return " | ".join(_e(t) for t in typ)
    if typ == "array":
        items = schema.get("items")
        return "array of " + (type_of(items) if items else "any")
    if typ == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return "object of " + type_of(schema["additionalProperties"])
    if typ is None:
        return "any"
    fmt = schema.get("format")
    return _e(typ) + (f" ({_e(fmt)})" if fmt else "")


def _bounds(schema: Mapping[str, Any]) -> list[str]:
    """The schema's constraints in words: ``≥ 1``, ``≤ 10``, ``at most 200 characters``."""
    parts: list[str] = []
    for sub in schema.get("anyOf", [schema]):
        for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"),
                          ("maximum", "≤"), ("exclusiveMaximum", "<")):  # fmt: skip
            if key in sub:
                v = sub[key]
                v = int(v) if isinstance(v, float) and v.is_integer() else v
                parts.append(f"{word} {v:,}" if isinstance(v, int) else f"{word} {v}")
        if "maxLength" in sub:
            parts.append(f"at most {sub['maxLength']:,} characters")
        if "maxItems" in sub:
            parts.append(f"at most {sub['maxItems']:,} items")
        if "pattern" in sub:
            parts.append(f"matches <code>{_e(sub['pattern'])}</code>")
    return parts


def _details(schema: Mapping[str, Any], description: str | None = None) -> str:
    """Description, default and constraints of a field or parameter."""
    bits = []
    desc = description or schema.get("description")
    if desc:
        bits.append(_e(desc))
    if "default" in schema and schema["default"] is not None:
        bits.append(f'<span class="muted">default <code>{_e(schema["default"])}</code></span>')
    bounds = _bounds(schema)
    if bounds:
        bits.append(f'<span class="muted">{"; ".join(bounds)}</span>')
    return "<br>".join(bits)


def _parameters(params: list[Mapping[str, Any]]) -> str:
    rows = []
    for p in params:
        schema = p.get("schema", {})
        req = ' <span class="req">required</span>' if p.get("required") else ""
        rows.append(
            f"<tr><td><code>{_e(p['name'])}</code>{req}</td><td>{_e(p.get('in', ''))}</td>"
            f"<td>{type_of(schema)}</td><td>{_details(schema, p.get('description'))}</td></tr>"
        )
    return (
        "<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _content(content: Mapping[str, Any]) -> str:
    parts = []
    for media, body in content.items():
        schema = body.get("schema")
        what = type_of(schema) if schema else ""
        parts.append(f"<code>{_e(media)}</code> {what}".strip())
    return "; ".join(parts)


def _operation(method: str, path: str, op: Mapping[str, Any]) -> str:
    anchor = _anchor(f"{method}-{path}")
    out = [
        f'<section id="{anchor}"><h3><span class="method {method}">{method.upper()}</span> '
        f'<span class="path">{_e(path)}</span> — {_e(op.get("summary", ""))}</h3>',
        _prose(op.get("description")),
    ]
    if op.get("parameters"):
        out.append(_parameters(op["parameters"]))
    body = op.get("requestBody")
    if body:
        req = " (required)" if body.get("required") else ""
        out.append(f"<p><b>Request body</b>{req}: {_content(body.get('content', {}))}</p>")
    rows = []
    for code, resp in op.get("responses", {}).items():
        rows.append(
            f"<tr><td><code>{_e(code)}</code></td><td>{_e(resp.get('description', ''))}</td>"
            f"<td>{_content(resp.get('content', {}))}</td></tr>"
        )
    if rows:
        out.append(
            "<table><tr><th>status</th><th>meaning</th><th>body</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    out.append("</section>")
    return "\n".join(x for x in out if x)


def _schema(name: str, schema: Mapping[str, Any]) -> str:
    out = [f'<section id="schema-{_anchor(name)}"><h3><code>{_e(name)}</code></h3>']
    out.append(_prose(schema.get("description")))
    props = schema.get("properties")
    if props:
        required = set(schema.get("required", ()))
        rows = []
        for field, sub in props.items():
            req = ' <span class="req">required</span>' if field in required else ""
            rows.append(
                f"<tr><td><code>{_e(field)}</code>{req}</td><td>{type_of(sub)}</td>"
                f"<td>{_details(sub)}</td></tr>"
            )
        out.append(
            "<table><tr><th>field</th><th>type</th><th>about</th></tr>" + "".join(rows) + "</table>"
        )
    else:
        out.append(f"<p>{type_of(schema)}</p>")
    out.append("</section>")
    return "\n".join(x for x in out if x)


def render_docs(schema: Mapping[str, Any]) -> str:
    """The reference page for an OpenAPI schema (a dict as ``app.openapi()`` returns)."""
    info = schema.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')} API".strip()
    ops = [
        (method, path, op)
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
        if method in _METHODS
    ]
    schemas = schema.get("components", {}).get("schemas", {})
    security = schema.get("components", {}).get("securitySchemes", {})
    toc = "".join(
        f'<li><a href="#{_anchor(f"{m}-{p}")}"><span class="method {m}">{m.upper()}</span> '
        f'<span class="path">{_e(p)}</span></a> {_e(op.get("summary", ""))}</li>'
        for m, p, op in ops
    )
    auth = "".join(
        f"<p>Authentication: <code>{_e(s.get('scheme', s.get('type', '')))}</code> "
        f"(<code>Authorization: Bearer TOKEN</code>), {_e(s.get('description', ''))}; "
        "without a token configured the API is open.</p>"
        for s in security.values()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<p>{_e(info.get("summary", ""))}</p>
{_prose(info.get("description"))}
<p class="muted">The machine-readable schema: <a href="/openapi.json"><code>/openapi.json</code></a>
(OpenAPI {_e(schema.get("openapi", ""))}). Errors are JSON:
<code>{{"error": message, "detail": ...}}</code>.</p>
{auth}
<nav><h2>Operations</h2><ul>{toc}</ul></nav>
<h2>Operations</h2>
{"".join(_operation(m, p, op) for m, p, op in ops)}
<h2>Schemas</h2>
{"".join(_schema(n, s) for n, s in schemas.items())}
</body></html>
"""


def add_docs_route(app: FastAPI) -> None:
    """``GET /docs``: :func:`render_docs` of the app's schema (made once, then kept)."""
    page: list[str] = []

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if not page:
            page.append(render_docs(app.openapi()))
        return HTMLResponse(
            page[0],
            headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"},
        )
