"""The web face: the REST API (and, later, the review console) over the claims workflow."""

from .app import create_app

__all__ = ["create_app"]
