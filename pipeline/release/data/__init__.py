"""Embedded public Human3.6M facts as JSON (see pipeline.release.metadata.default_metadata)."""
