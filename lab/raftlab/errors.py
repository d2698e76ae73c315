"""The one exception type the lab raises for conditions a person can act on."""


class LabError(RuntimeError):
    """A lab operation failed; the message says what to do about it."""
