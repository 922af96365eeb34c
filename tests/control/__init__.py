"""Tests of corral.control."""
