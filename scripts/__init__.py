"""The click commands `run-mnist` and `profile-input`: thin layers over the library."""

__all__ = []
