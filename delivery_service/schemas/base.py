"""What every client input model shares: strict parsing and storable text."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Strict,
    model_validator,
)

# JSON has no UUID or date-time type: they arrive as strings, which a strict model would
# refuse (FastAPI validates the parsed body as Python objects). Ids and times in client input
# are declared with these.
Id = Annotated[uuid.UUID, Strict(False)]


When = Annotated[datetime, Strict(False)]


class StrictModel(BaseModel):
    """Client input over REST is as strict as over the sockets: unknown fields are refused,
    "5" is not a number and "yes" is not a boolean (a lax parse would accept an answer's
    `client_seq` in a form the socket refuses). And every string in it, however deep (an
    answer's response is any JSON), must be storable: PostgreSQL refuses a NUL character and
    UTF-8 a lone surrogate, and each failed deep in a write instead of at the door."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        bad = unstorable_text(data)
        if bad is not None:
            raise ValueError(f"text that cannot be stored: {bad}")
        return data


def unstorable_text(value: Any) -> str | None:
    """What is wrong with the first unstorable string in `value` (None: nothing)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate"
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    for item in items:
        found = unstorable_text(item)
        if found is not None:
            return found
    return None
