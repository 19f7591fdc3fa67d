"""What a failed activity or child really said, for people and for code.

An ``ActivityError`` or ``ChildWorkflowError`` only wraps what the step raised; the first error
under the wrappers is the step's own (an ``ApplicationError`` with our type and message). The
errors below that are its technical causes, kept in the history for whoever investigates.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

# What awaiting a step raises when it failed for good: an activity's ActivityError, or a local
# activity's own ApplicationError (temporalio hands a local activity's failure over unwrapped).
STEP_FAILED = (ActivityError, ApplicationError)


def root_cause(err: BaseException) -> BaseException:
    while isinstance(err, (ActivityError, ChildWorkflowError)) and err.__cause__ is not None:
        err = err.__cause__
    return err


def root_message(err: BaseException) -> str:
    """The step's own message, its first line (a database error's CONTEXT lines stay out)."""
    cause = root_cause(err)
    message = str(getattr(cause, "message", None) or cause)
    return message.strip().splitlines()[0] if message.strip() else type(cause).__name__


def root_type(err: BaseException) -> str:
    """The step's ApplicationError type (an ``Errors`` value), or ""."""
    return getattr(root_cause(err), "type", None) or ""
