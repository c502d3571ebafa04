"""The exception for mistakes a user can fix, as opposed to bugs."""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input that the user can correct: the command line exits with code 2.

    The message is one paragraph that names the file, field or value and says
    how to fix it. The command line prints it without a traceback.

    Examples
    --------
    >>> str(UserInputError("protocols/x.yaml: missing field 'id'; add it."))
    "protocols/x.yaml: missing field 'id'; add it."
    """
