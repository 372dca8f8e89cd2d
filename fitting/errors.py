"""User-facing errors of the fitting package (bad model files, bad regressors)."""


class BodyModelError(ValueError):
    """A body-model or regressor file is missing or malformed; the message names the file."""
