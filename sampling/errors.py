"""User-facing errors of the sampling package (bad or corrupt shards)."""


class ShardError(ValueError):
    """A shard file is missing, truncated or inconsistent; the message names the file."""
