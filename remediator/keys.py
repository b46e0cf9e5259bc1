"""Every piece of the remediator app's state, under a typed key declared once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from redis_autoheal.config import Config
from remediator.audit import AuditWriter
from remediator.breaker import BreakerStore
from remediator.dispatch import Dispatcher
from remediator.metrics import Metrics
from remediator.operations import Operations
from remediator.shutdown import Shutdown
from remediator.users import UserDirectory
from remediator.violations import ViolationLog

if TYPE_CHECKING:
    from redis_autoheal.probe import Prober
    from remediator.control import TargetControl

CONFIG = web.AppKey("config", Config)
WEBHOOK_TOKEN = web.AppKey("webhook_token", bytes)  # its SHA-256 digest, not the token
METRICS = web.AppKey("metrics", Metrics)
AUDIT = web.AppKey("audit", AuditWriter)
BREAKER = web.AppKey("breaker", BreakerStore)
CONTROLS: web.AppKey[dict[str, TargetControl]] = web.AppKey("controls")
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
USERS = web.AppKey("users", UserDirectory)
PROBERS: web.AppKey[dict[str, Prober]] = web.AppKey("probers")
OPERATIONS = web.AppKey("operations", Operations)
VIOLATIONS = web.AppKey("violations", ViolationLog)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
SHUTDOWN = web.AppKey("shutdown", Shutdown)
