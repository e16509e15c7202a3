"""pkpd's own output folders: where results are written, and the rules for it.

pkpd never deletes, moves or overwrites anything it did not create.  Every
folder it writes carries a marker file, :data:`MARKER` (``.pkpd-output``),
and a save into a target path

* creates the folder when nothing is there (parent folders too);
* uses an existing *empty* folder (one made for the purpose: it holds nothing
  that could be lost);
* replaces a folder that carries the marker (an earlier pkpd result), whole;
* refuses anything else -- a file, or a folder holding other things -- with a
  :class:`~pkpd.checks.PKPDInputError` that names the path.  Delete the
  marker file to keep pkpd from ever replacing a results folder.

How a save stays safe:

* the files are written into a hidden staging folder beside the target
  (``.NAME-pkpd-`` and 8 random characters) and renamed into place when complete, so the
  target holds either the previous result or the new one, never a mix;
* SIGINT, SIGTERM and SIGHUP during the save first remove the staging folder
  and then take their usual effect (KeyboardInterrupt, termination); during
  the final swap and the clean-up they wait until it is done.  (SIGKILL cannot
  be caught: it may leave a staging folder behind.)
* saves into the same folder are serialised by an advisory lock (``flock``)
  on the parent folder during the swap, so with two runs into one target the
  later swap replaces the earlier result whole; neither is mixed or lost
  half-way;
* folders are made with ``mkdir``'s default mode, so they get the user's
  umask (0755 under umask 022), not the 0700 of :func:`tempfile.mkdtemp`.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ._version import __version__
from .checks import PKPDInputError

try:  # advisory locks: POSIX only; elsewhere saves are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

#: Marker file in every folder pkpd writes; only folders with it are replaced.
MARKER = ".pkpd-output"

#: Default parent of the results folders (relative to the working directory).
DEFAULT_ROOT = Path("pkpd-results")

#: Longest accepted scenario name (it becomes a folder name), characters.
MAX_NAME_LENGTH = 64

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")
_SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))
_FIX = "Choose another folder (e.g. --out with a new path), or move that one away yourself."


# ================================================================= names
def check_name(field: str, value) -> str:
    """Return ``value`` if it may name an output folder, else raise.

    Accepted: 1-64 ASCII letters, digits, spaces, ``.``, ``-`` and ``_``,
    starting with a letter or digit and not ending in a space or dot; no
    path separators and no ``..``.  ``field`` names the setting in the message.
    """
    ok = (isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and _NAME.fullmatch(value) is not None
          and ".." not in value and not value.endswith((" ", ".")))
    if not ok:
        raise PKPDInputError(
            f"{field} must be 1-{MAX_NAME_LENGTH} letters, digits, spaces, '.', '-' or '_', starting with a letter "
            f"or digit, without '/', '\\' or '..'; got {value!r}. It names the output folder: write e.g. "
            f'name = "itp_phase3".'
        )
    return value


def folder_name(text: str) -> str:
    """A safe single folder name made from ``text`` (for any text, checked or not).

    Characters other than ASCII letters, digits, ``.``, ``-`` and ``_`` become
    ``_``; leading dots and dashes are dropped (no hidden folder, no ``..``,
    no option-like name); at most :data:`MAX_NAME_LENGTH` characters.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip(".-")[:MAX_NAME_LENGTH].rstrip(".")
    return slug or "results"


def default_folder(name: str) -> Path:
    """``pkpd-results/<name>``, with ``name`` made safe by :func:`folder_name`."""
    return DEFAULT_ROOT / folder_name(name)


# ================================================================= checks
def check_target(target) -> Path:
    """Raise :class:`PKPDInputError` unless pkpd may write results at ``target``.

    Checks without writing anything (see the module docs for the rules), so
    that a run can stop before its simulation.  Returns the absolute path.
    """
    try:
        target = Path(target).expanduser().resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, an unknown ~user
        raise PKPDInputError(f"output folder {str(target)!r} cannot be resolved ({err}). {_FIX}") from None
    _existing_state(target)
    if not target.exists():
        ancestor = target.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise PKPDInputError(f"cannot create output folder {str(target)!r}: {str(ancestor)!r} is a file, not a folder. {_FIX}")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise PKPDInputError(f"cannot create output folder {str(target)!r}: no permission to write in {str(ancestor)!r}. {_FIX}")
    return target


def _existing_state(target: Path) -> str:
    """"absent", "empty" or "pkpd"; raise for what pkpd must not replace."""
    if not os.path.lexists(target):
        return "absent"
    if not target.is_dir():
        raise PKPDInputError(f"output folder {str(target)!r} is an existing file; pkpd never overwrites a file it did not create. {_FIX}")
    if _is_pkpd_folder(target):
        return "pkpd"
    try:
        with os.scandir(target) as entries:
            empty = next(entries, None) is None
    except OSError as err:
        raise PKPDInputError(f"output folder {str(target)!r} cannot be read ({err.strerror}). {_FIX}") from None
    if empty:
        return "empty"
    raise PKPDInputError(
        f"output folder {str(target)!r} already exists with files pkpd did not write (it has no {MARKER} marker); "
        f"pkpd never deletes them. {_FIX}"
    )


def _is_pkpd_folder(folder: Path) -> bool:
    try:
        with open(folder / MARKER) as fh:
            return fh.readline().startswith("pkpd ")
    except (OSError, UnicodeDecodeError):
        return False


# ================================================================= writing
def write_folder(target, fill: Callable[[Path], object]) -> Path:
    """Write a results folder at ``target``: ``fill(folder)`` writes the files
    into a fresh staging folder, which then replaces ``target`` as a whole.

    Follows the rules of the module docs (refuses a file or a folder pkpd did
    not write; cleans up on errors and signals).  Returns the absolute path.
    Raises :class:`PKPDInputError` for a target that must not or cannot be
    written, and OSError for faults while writing (disk full, ...), naming
    the path.
    """
    target = check_target(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(target, err) from None
    with _SignalGuard() as guard:
        staging = trash = None
        try:
            with guard.hold():
                staging = _new_dir(target, "pkpd")
            try:
                fill(staging)
                _write_marker(staging)
            except OSError as err:  # name the file, not the staging folder that is about to go
                raise _unwritable(target, err, where=Path(err.filename).name if err.filename else None) from None
            with _locked(parent), guard.hold():  # waiting for the lock may be interrupted; the swap may not
                trash = _swap(staging, target)
                staging = None
                guard.completed = True
        finally:
            with guard.hold():
                for folder in (staging, trash):
                    if folder is not None:
                        shutil.rmtree(folder, ignore_errors=True)
    return target


def _new_dir(target: Path, tag: str) -> Path:
    """A new, uniquely named hidden folder beside ``target``, mode per umask."""
    stem = target.name[:100]
    while True:
        path = target.parent / f".{stem}-{tag}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path)  # mode 0o777 & ~umask, unlike tempfile.mkdtemp's 0o700
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise _unwritable(target, err, where=target.parent) from None


def _write_marker(folder: Path) -> None:
    (folder / MARKER).write_text(
        f"pkpd {__version__} results folder\n"
        "Written by pkpd; the next pkpd run into this folder replaces it whole.\n"
        "Delete this file to keep pkpd from replacing the folder.\n"
    )


def _swap(staging: Path, target: Path) -> Path | None:
    """Put ``staging`` at ``target``; return the moved-away old result (or None)."""
    state = _existing_state(target)  # again: the target may have changed while the files were written
    trash = None
    try:
        if state == "pkpd":
            trash = _new_dir(target, "pkpd-old")
            os.replace(target, trash)  # onto the empty folder just made
            try:
                os.replace(staging, target)
            except OSError:
                os.replace(trash, target)  # put the previous result back
                raise
        else:  # absent, or an empty folder: rename(2) replaces only an empty one
            os.replace(staging, target)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            _existing_state(target)  # something appeared meanwhile: refuse, naming it
        raise _unwritable(target, err, where=target.parent) from None
    return trash


def _unwritable(target: Path, err: OSError, where: Path | None = None) -> Exception:
    """An OSError while writing the folder, as an error naming the target
    (and ``where`` it happened, by default the file of the error)."""
    reason = err.strerror or str(err)
    where = where if where is not None else err.filename
    where = f" (in {str(where)!r})" if where and str(where) != str(target) else ""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG):
        return PKPDInputError(f"cannot write output folder {str(target)!r}: {reason}{where}. {_FIX}")
    return OSError(err.errno, f"cannot write output folder {str(target)!r}: {reason}{where}")


@contextmanager
def _locked(folder: Path):
    """Hold an exclusive advisory lock on ``folder`` (released on close, also
    when the process dies, so a killed run never leaves it locked)."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            fd = None  # unreadable parent: go on without the lock
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


class _Interrupted(BaseException):
    """A termination signal arrived during a save."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _SignalGuard:
    """During a save, make SIGINT / SIGTERM / SIGHUP raise :class:`_Interrupted`
    (so that the staging folder is removed), defer them inside :meth:`hold`,
    and afterwards give each signal its previous effect.

    Works in the main thread only (Python runs signal handlers there); in
    other threads it does nothing.  Signals set to be ignored stay ignored.
    """

    def __init__(self):
        self.previous: dict = {}
        self.pending: int | None = None
        self.raised = False
        self.holding = 0
        self.completed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.pending is None:
            self.pending = signum
        if not self.holding and not self.raised:
            self.raised = True
            raise _Interrupted(signum)

    @contextmanager
    def hold(self):
        """Defer signals to the end of the block (the swap, the clean-up)."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if not self.holding and self.pending is not None and not self.raised:
            self.raised = True
            raise _Interrupted(self.pending)

    def __exit__(self, kind, exc, tb):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.pending is None:
            return False
        signal.raise_signal(self.pending)  # its usual effect: KeyboardInterrupt, or the process ends
        # The previous handler returned: the program goes on after this signal.
        if self.completed and (kind is None or kind is _Interrupted):
            return True
        if kind is _Interrupted:
            raise InterruptedError(errno.EINTR, f"saving results was interrupted by {signal.Signals(self.pending).name}; "
                                                "nothing was written and earlier results are intact") from None
        return False
