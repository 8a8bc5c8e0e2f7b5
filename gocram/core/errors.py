"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class GocramError(Exception):
    """A problem with the user's input (config, paths, data) rather than a bug."""


class ConfigError(GocramError):
    """A config key, value or combination is invalid; the message names the field."""
