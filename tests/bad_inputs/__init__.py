"""The bad-input catalogue: cases shared by ``tests/test_bad_inputs.py``.

Each module of this package holds the cases of one area of the toolkit
(``CASES``, a list of :class:`Case`, :class:`CliCase` or :class:`WarnCase`)
and, where a fault needs more than one call, ordinary ``test_*`` functions
that ``tests/test_bad_inputs.py`` imports so pytest collects them there.

A case passes only when the error (or warning) has the expected type and
its message names every fragment in ``mentions`` -- the field and the
offending value, so that a user can find and fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class Case:
    """``call(tmp_path)`` must raise ``error`` with every ``mentions`` fragment in its message."""

    id: str
    call: Callable[[Path], object]
    error: type[BaseException]
    mentions: tuple[str, ...]


@dataclass(frozen=True)
class CliCase:
    """``pkpd <argv>`` must exit 2 with a one-line error naming every fragment.

    argv : the arguments, or a function of ``tmp_path`` that writes the files
        it needs and returns them.
    """

    id: str
    argv: Sequence[str] | Callable[[Path], Sequence[str]]
    mentions: tuple[str, ...]


@dataclass(frozen=True)
class WarnCase:
    """``call(tmp_path)`` must warn ``warning`` with every ``mentions`` fragment in one warning's message."""

    id: str
    call: Callable[[Path], object]
    warning: type[Warning]
    mentions: tuple[str, ...]
