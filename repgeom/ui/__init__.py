"""The Dash layer: component ids, layout, callbacks and the app factory. The only package that imports Dash."""

from .factory import create_app

__all__ = ["create_app"]
