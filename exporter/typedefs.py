"""The typed keys of the exporter's application state, declared once."""

from __future__ import annotations

from aiohttp import web

from exporter.follow import Followers
from exporter.state import ExporterState

STATE = web.AppKey("state", ExporterState)  # the config in force and its targets
FOLLOWERS = web.AppKey("followers", Followers)  # exporter.follow's, one per followed unit
