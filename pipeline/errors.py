"""One exception type for every user-facing failure, so each CLI can print one clear line, and
the way those lines list values."""


class PipelineError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


def listing(values, limit: int = 10) -> str:
    """The first `limit` values for an error line, with "..." when there are more."""
    values = list(values)
    return ", ".join(str(v) for v in values[:limit]) + (" ..." if len(values) > limit else "")
