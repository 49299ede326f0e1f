"""The device families decoded by the Home Assistant community's standalone
parsers: one module per family, each exporting ``FORMAT`` (see formats.py).
A module imports its parser, so it is imported only when its family is
enabled."""
