"""Tests of corral.store."""
