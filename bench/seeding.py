"""What every benchmark seeds: a plain test of choice items with known answers."""

from __future__ import annotations

from delivery_service.schemas.tests import TestIn
from test_assembly.model import ChoiceDef, ItemDefinition


def choice_test(title: str, *, items: int = 5, time_limit_seconds: int = 3600) -> TestIn:
    return TestIn(
        title=title,
        time_limit_seconds=time_limit_seconds,
        items=[
            ItemDefinition(
                identifier=f"q{i}",
                prompt=f"Question {i}?",
                correct=["A"],
                choices=[ChoiceDef(identifier=c, text=c) for c in "ABCD"],
            )
            for i in range(1, items + 1)
        ],
    )
