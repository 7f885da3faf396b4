"""The one exception users see from the datasets package."""


class DatasetError(ValueError):
    """A dataset file is missing, malformed or asked for something it cannot give.

    The message is a single line naming the expected path and layout, so that the
    user can fix their data directory without reading a traceback from h5py or
    numpy. Raise it ``from None`` when translating a lower-level error.
    """
