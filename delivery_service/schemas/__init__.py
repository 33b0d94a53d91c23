"""What clients send: the REST bodies, by resource, each parsed strictly (base.py)."""
