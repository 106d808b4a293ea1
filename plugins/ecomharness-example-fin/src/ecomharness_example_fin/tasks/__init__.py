"""Task YAML of the example plugin (a package so lm-eval's entry point can find it)."""
