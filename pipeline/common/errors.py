"""One exception type for every user-facing failure, so each CLI can print one clear line, the
way those lines list values, and what makes text from outside (a server, a file) safe to print
or to write into a CSV cell."""

import re

# ANSI escape sequences (CSI ..., OSC ... BEL/ST) and every other control character
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula


class PipelineError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


def listing(values, limit: int = 10) -> str:
    """The first `limit` values for an error line, with "..." when there are more."""
    values = list(values)
    return ", ".join(str(v) for v in values[:limit]) + (" ..." if len(values) > limit else "")


def safe_text(value, limit: int = 200) -> str:
    """Text from outside made safe for a terminal line: escape sequences and control characters
    removed (a server cannot move the cursor, recolour or retitle the terminal), cut to `limit`."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", str(value)))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_cell(value, limit: int = 200) -> str:
    """Text from outside made safe for a CSV cell a spreadsheet may open: also never a formula."""
    text = safe_text(value, limit)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
