"""Errors the command line shows as one clear line instead of a traceback."""


class UserError(Exception):
    """Bad input from outside (a flag, a file, a YAML field): the message says which and why."""


# The exit codes of every `ecomharness` subcommand, each with one meaning, so a CI job can
# tell a verdict from a crash: a crash (3) never reads as a failed gate (1).
EXIT_OK = 0  # success; the gate passed
EXIT_FAILED = 1  # the gate failed a check (and only then)
EXIT_INPUT = 2  # bad input or usage, named in one line
EXIT_INTERNAL = 3  # an internal error (traceback saved), or evaluations that crashed
