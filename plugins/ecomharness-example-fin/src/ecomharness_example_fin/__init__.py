"""Example third-party ecomharness plugin: one finance task and one metric."""
