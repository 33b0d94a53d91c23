"""The pure core: state machines, timing, navigation and scoring rules.

Nothing here imports fastapi, redis or sqlalchemy, and nothing reads a clock: callers pass `now`.
"""
