"""The live layer over Redis: timers, the event bus, connection ownership, tickets.

Redis holds only derived, rebuildable state (DESIGN.md §2): losing it costs a rebuild, never data.
"""
