"""When progress bars show. ``kbsemcom -q`` and ``--json`` set ``TQDM_DISABLE=1`` for the
process; tqdm reads it only where a caller passes no ``disable`` of its own, so callers that
take a ``progress`` argument pass ``disable=bars_off(progress)``."""
import os


def bars_off(progress=True):
    """True when a progress bar must not show: the caller said so, or TQDM_DISABLE is set."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
