"""User-caused errors: the CLI prints them as one line on stderr and exits 2.

Anything a user can get wrong (a flag, a file, a row, a missing dataset, an adapter that
does not fit its base) raises HarnessError with a message naming the thing and what to do.
Bugs are not HarnessErrors and stay loud with a traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error the user can fix; str(error) is the whole message."""

    exit_code = 2
