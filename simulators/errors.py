"""The one root of the package's user errors.

Everything a user can get wrong (a bad argument, a malformed file, a checkpoint of another model)
raises a subclass of :class:`UserError` with a one-line message; the command line prints it and
exits with status 2. It lives here, in the lower package, so that ``simulators`` and
``surrogates`` share it without ``simulators`` importing ``surrogates``.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A problem with what the user asked for; its message is one line for the user."""
