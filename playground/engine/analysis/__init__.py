"""Measuring a model: its loss and bits per character on a text, its accuracy on tasks, and the
power law fitted through a ladder of runs."""
