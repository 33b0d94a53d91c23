"""What every benchmark seeds: a plain test of choice items with known answers."""

from __future__ import annotations

from delivery_service.schemas import Choice, ChoiceItemIn, TestIn


def choice_test(title: str, *, items: int = 5, time_limit_seconds: int = 3600) -> TestIn:
    return TestIn(
        title=title,
        time_limit_seconds=time_limit_seconds,
        items=[
            ChoiceItemIn(
                identifier=f"q{i}",
                prompt=f"Question {i}?",
                correct=["A"],
                choices=[Choice(identifier=c, text=c) for c in "ABCD"],
            )
            for i in range(1, items + 1)
        ],
    )
