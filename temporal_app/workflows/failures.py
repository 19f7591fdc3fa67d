"""What a failed activity or child really said: the innermost error, for people and for code."""

from __future__ import annotations


def root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def root_message(err: BaseException) -> str:
    cause = root_cause(err)
    return str(getattr(cause, "message", None) or cause)


def root_type(err: BaseException) -> str:
    """The innermost ApplicationError's type (an ``Errors`` value), or ""."""
    return getattr(root_cause(err), "type", None) or ""
