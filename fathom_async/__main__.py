"""`python -m fathom_async` runs the `fathom-async` command line (extra `cli`)."""

from ._cli import main

if __name__ == "__main__":
    main()
