"""The base of the errors a user can fix: each message says what was wrong and how to fix it.

Apps print them as one line (exit status 1; see ``kbsemcom --help``), and a flowgraph script
that imports the blocks prints an uncaught one as one line too, instead of a traceback (see
``kbsemcom.__init__``).
"""


class UserError(Exception):
    """Bad input or a missing file; the message names the fix."""


class ExtractorError(UserError, RuntimeError):
    """An extractor that cannot be built (unknown model or tag, weights neither in the local
    cache nor downloadable now). Raised by core.extractors and core.hub."""
