"""activation layers (not written yet)."""

__all__ = []
