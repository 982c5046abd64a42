"""Fixtures the image plugins' tests share."""

from tests.fixtures.images import fake_fashion

__all__ = ["fake_fashion"]
