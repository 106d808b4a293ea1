"""The embedded default run that the README's first command starts."""
