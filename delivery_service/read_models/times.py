"""How a moment is written on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    PlainSerializer,
)

from delivery_service.domain.timing import iso

UtcTime = Annotated[datetime, PlainSerializer(iso, return_type=str)]
