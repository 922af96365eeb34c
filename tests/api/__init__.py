"""Tests of corral.api."""
