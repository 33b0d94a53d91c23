"""Use cases: load, let the domain decide, write with optimistic locking, then publish."""
