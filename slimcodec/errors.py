"""Exceptions raised by slimcodec. Each message is one line meant for users."""


class SlimError(Exception):
    """Base class of every error slimcodec reports to users."""


class SlimFormatError(SlimError):
    """A .slim file is malformed, corrupt, from a newer format or from other weights."""


class WeightsMismatchError(SlimFormatError):
    """A .slim file names other weights than the ones given to decode it.

    Attributes:
        file_id (bytes): the weights id the file's header records.
        weights_id (bytes): the id of the weights at hand.
        not_shipped (bool): no weights of ``file_id`` ship with this slimcodec (they were looked for).
    """

    def __init__(self, file_id: bytes, weights_id: bytes, not_shipped: bool = False):
        self.file_id, self.weights_id, self.not_shipped = file_id, weights_id, not_shipped
        hint = f"; weights {file_id.hex()} do not ship with this slimcodec" if not_shipped else ""
        super().__init__(f"made with other weights (id {file_id.hex()}; these are {weights_id.hex()}){hint}")

    def __reduce__(self):  # keeps the fields when sent back from a worker process
        return type(self), (self.file_id, self.weights_id, self.not_shipped)


class WeightsFileError(SlimError):
    """A weights file cannot be used: unreadable, not weights, damaged, or its runtime is missing.

    Attributes:
        path (str): the file.
        reason (str): one line saying why.
    """

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # keeps the fields when sent back from a worker process
        return type(self), (self.path, self.reason)


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
