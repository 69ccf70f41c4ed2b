"""The one exception the annotate command turns into a clean error message."""


class AnnotateError(Exception):
    """A problem with the inputs, the output or the options, worded for the user
    (it names the file and, for a bad row, the line or row)."""
