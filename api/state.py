"""Mutable per-app state: filled by the lifespan, read by the request handlers."""

from dataclasses import dataclass, field

from api.metrics import ServiceMetrics
from api.model import ServedModel
from api.settings import Settings


@dataclass
class ServiceState:
    """What the handlers read on every request; `model` is None until the lifespan has loaded it."""

    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    model: ServedModel | None = None
    model_document: bytes = b"{}"
