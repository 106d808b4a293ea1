"""Training: recipes, the Trainer wiring, and callbacks (one per file)."""
