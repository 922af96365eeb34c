"""Tests of corral.cli."""
