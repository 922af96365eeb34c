"""Policies beside the core that decide capacity: the pool autoscaler (pool.py)."""
