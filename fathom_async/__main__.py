"""`fathom-async` and `python -m fathom_async`: the command line's entry point.

Thin on purpose. The command line needs the `cli` extra (click, rich), and someone who
installed plain `fathom-async` should read which extra to install, not a
`ModuleNotFoundError` traceback. So nothing here imports the extra at import time:
`main` imports `_cli` when called, and turns a missing click or rich into one line on
stderr and exit code 2 (a usage error, as the command line's own codes go).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_USAGE = 2
#: The top-level modules of the `cli` extra.
CLI_EXTRA_MODULES = frozenset({"click", "rich"})
MISSING_CLI_EXTRA = (
    "fathom-async: the command line needs the 'cli' extra ({module} is not installed):\n"
    "  pip install 'fathom-async[cli]'\n"
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `fathom-async` command line (`argv`: the arguments, default `sys.argv`)."""
    try:
        from ._cli import main as run
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        if module not in CLI_EXTRA_MODULES:
            raise  # a real bug, not a missing extra: keep the traceback
        sys.stderr.write(MISSING_CLI_EXTRA.format(module=module))
        sys.exit(EXIT_USAGE)
    run(argv)


if __name__ == "__main__":  # pragma: no cover - run by `python -m`, in a subprocess
    main()
