"""The local status API."""
