"""The Shopping MMLU task YAML files (a package so that lm-eval's entry-point layout finds them)."""
