"""One exception type for every user-facing failure, so each CLI can print one clear line."""


class PipelineError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""
