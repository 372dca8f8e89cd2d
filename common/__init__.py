"""The bottom of the dependency graph: units, hashing, seeding, device choice, deterministic writers.

Imported by every package, imports none of them."""
