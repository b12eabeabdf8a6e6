"""The package's error for problems with what the user gave it.

A `UserError` is a problem with the input, the files or the settings of a command,
never a bug: the commands print it as one line (`FILE:LINE: what is wrong`,
`FILE: what is wrong` or `--option: what is wrong`) and exit with status 1. Anything
else that goes wrong is a bug and keeps its traceback. It is a `ValueError`, so code
that catches those keeps working. This module imports nothing of the package.
"""


class UserError(ValueError):
    """A problem with the input, files or settings a user gave: reported in one line."""
