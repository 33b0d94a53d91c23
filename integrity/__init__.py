"""Integrity: the event taxonomy, the hash-chained ledger's sealing and verification, lockdown
policy, Safe Exam Browser checks and violation rules. Pure: no I/O, no framework imports; the
delivery service stores and publishes what these modules decide."""
