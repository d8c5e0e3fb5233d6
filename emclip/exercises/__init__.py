"""Checkers for the notebooks' exercises: call them on your solution, they explain what is wrong."""
