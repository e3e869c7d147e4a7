"""Errors every layer of rlvis may raise: low in the import order, so nothing reaches up for them."""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""
