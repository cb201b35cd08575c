__version__ = "0.1.0"
"""The installed version of fathom-async (also sent in the `User-Agent` header)."""
