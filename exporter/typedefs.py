"""The typed keys of the exporter's application state, declared once."""

from __future__ import annotations

from aiohttp import web

from exporter.probe import TargetProber
from redis_autoheal.config import Config

CONFIG = web.AppKey("config", Config)
PROBERS = web.AppKey("probers", dict[str, TargetProber])  # by target name
