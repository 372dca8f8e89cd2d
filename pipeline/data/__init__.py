"""Embedded public Human3.6M facts as JSON (see pipeline.metadata.default_metadata)."""
