"""``replay serve``: the HTTP API and web page over a store (see replay.service.app)."""

from __future__ import annotations

from replay.service.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
