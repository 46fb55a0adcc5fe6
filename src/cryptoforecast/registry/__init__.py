"""Versioned, checksummed model store with stages (see :mod:`.store`)."""
