"""Exceptions raised by slimcodec. Each message is one line meant for users."""


class SlimError(Exception):
    """Base class of every error slimcodec reports to users."""


class SlimFormatError(SlimError):
    """A .slim file is malformed, corrupt, from a newer format or from other weights."""


class UnsupportedImageError(SlimError):
    """An input image cannot be encoded (unknown format, too large, ...)."""


class ConversionWarning(UserWarning):
    """An input image was changed to fit the codec (16-bit reduced, CMYK converted, ...).

    :func:`slimcodec.codec.encode` issues one per conversion; the message is one line.
    """


class WorkerStartError(SlimError):
    """A worker process of a ``slim`` batch could not start (its weights failed to load, ...),
    so it cannot convert a file.

    Attributes:
        reason (str): why, in one line.
    """

    def __init__(self, reason: str):
        super().__init__(f"a worker process could not start: {reason}")
        self.reason = reason

    def __reduce__(self):  # keeps ``reason`` when sent back from the worker process
        return type(self), (self.reason,)
