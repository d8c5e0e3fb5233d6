"""Plots of the kit, one module per topic (``emclip.viz.data``, ``.clip``, ``.em``, ...).

Kept free of heavy imports: each module imports matplotlib itself.
"""
