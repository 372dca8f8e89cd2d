"""User-facing errors of the trainer (bad config, missing run or checkpoint)."""


class NVFError(ValueError):
    """A run folder, checkpoint or config is unusable; the message names the file."""
