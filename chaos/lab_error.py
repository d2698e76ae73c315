"""The error every nemesis step raises when the lab did not do what it was asked."""


class LabError(RuntimeError):
    pass
