"""The course machinery, which the method never imports (its modules: README's table of rooms)."""
