"""User errors versus bugs: the one place that decides how a failed command ends.

A :class:`UserError` is a mistake the person running the command can fix from its message alone (a
dataset folder that is not where the config says, a missing or mismatched checkpoint, a misspelled
config key, an empty or unreadable target set, more clusters than classifier rows, a loss that went
non-finite). The command line tools end such a run with one line, ``error: <message>``, on stderr
and exit code :data:`EXIT_USER_ERROR` (2, as argparse uses for a bad command line), without a
traceback. Every other exception is a bug and keeps its traceback. ``INCLR_DEBUG=1`` in the
environment shows the traceback of user errors too.

Each user error keeps the built-in base it had before (``FileNotFoundError``, ``ValueError``, ...), so
``except ValueError`` and ``pytest.raises(FileNotFoundError)`` in existing code go on working.

This module imports nothing heavy: ``io.py`` and ``config.py`` build on it.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

__all__ = [
    "UserError", "DatasetError", "DatasetNotFoundError", "DatasetFormatError", "EmptyTargetSetError",
    "TooManyClustersError", "ConfigError", "ExportError", "PeerUserError", "EXIT_USER_ERROR", "DEBUG_ENV",
    "debug_enabled", "run_guarded", "report_user_error", "user_error_message",
]

#: exit status of a command stopped by a :class:`UserError` (argparse uses 2 for a bad command line)
EXIT_USER_ERROR = 2
#: environment switch: when set (to anything but "", "0", "false", "no"), user errors show their traceback
DEBUG_ENV = "INCLR_DEBUG"
# Set by the parent process of a multi-process launch: a file there marks "a message was printed"
_REPORTED_DIR_ENV = "INCLR_USER_ERROR_DIR"


class UserError(Exception):
    """A mistake in the command, config, data or files that its message tells the user how to fix."""


class DatasetError(UserError):
    """A dataset is missing, laid out differently from what its registry class expects, or broken."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder, list file or image is not where the config / FASTREID_DATASETS say."""


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file exists but does not have the expected format (e.g. a malformed list line)."""


class EmptyTargetSetError(DatasetError, ValueError):
    """The target training set of an adaptation run holds no (readable) image."""


class TooManyClustersError(UserError, RuntimeError, ValueError):
    """Clustering found more clusters than the classifier rows (INCLR.CLASSIFIER_ROWS) and nothing grew them."""


class ConfigError(UserError, ValueError):
    """A config file or override is wrong; the message names the key and what to do."""


class ExportError(UserError, ValueError):
    """The export cannot be done as asked (wrong config kind, output folder not writable, ...)."""


class PeerUserError(UserError, RuntimeError):
    """Another rank stopped on a user error (its message is included): this rank stops with it."""


def debug_enabled() -> bool:
    """True when ``INCLR_DEBUG`` asks for tracebacks of user errors too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def user_error_message(err: BaseException) -> str:
    """What ``error: ...`` shows: the message (the class name when there is none)."""
    return str(err).strip() or type(err).__name__


def _first_report() -> bool:
    """In a multi-process launch, True for the first process that reports (so the message appears
    once); always True in a single process."""
    directory = os.environ.get(_REPORTED_DIR_ENV)
    if not directory:
        return True
    try:
        fd = os.open(os.path.join(directory, "reported"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    except OSError:  # the folder vanished or is not writable: better twice than never
        return True
    os.close(fd)
    return True


def report_user_error(err: BaseException) -> None:
    """Print ``error: <message>`` on stderr (once per launch)."""
    if _first_report():
        sys.stdout.flush()
        print(f"error: {user_error_message(err)}", file=sys.stderr, flush=True)


def run_guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; a :class:`UserError` ends the process with one ``error:`` line on
    stderr and exit status 2, anything else propagates with its traceback.

    Used by every command line entry point, in the launching process and, under ``--num-gpus N``,
    in each worker process (a worker's exit status 2 then reaches the launching process, which
    exits with 2 as well without printing the message again).
    """
    import contextlib
    import tempfile

    owner = _REPORTED_DIR_ENV not in os.environ
    with contextlib.ExitStack() as stack:
        if owner:  # workers started from here inherit the folder through the environment
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="inclr-err-"))
            os.environ[_REPORTED_DIR_ENV] = directory
            stack.callback(os.environ.pop, _REPORTED_DIR_ENV, None)
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if debug_enabled():
                raise
            report_user_error(e)
            raise SystemExit(EXIT_USER_ERROR) from None
        except Exception as e:  # a worker process already reported its user error and exited with 2
            if _worker_exit_status(e) == EXIT_USER_ERROR and not debug_enabled():
                raise SystemExit(EXIT_USER_ERROR) from None
            raise


def _worker_exit_status(err: BaseException) -> Optional[int]:
    """Exit status of the worker behind torch.multiprocessing's ProcessExitedException, else None."""
    try:
        from torch.multiprocessing import ProcessExitedException
    except ImportError:  # pragma: no cover
        return None
    if isinstance(err, ProcessExitedException):
        return err.exit_code
    return None
