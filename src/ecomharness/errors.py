"""Errors the command line shows as one clear line instead of a traceback."""


class UserError(Exception):
    """Bad input from outside (a flag, a file, a YAML field): the message says which and why."""
