"""Benchmarks: the project's figures as ratios against PostgreSQL's own limits, measured in one run.

``python -m bench`` starts a throwaway cluster with default durability settings (fsync and
synchronous_commit on), measures a raw baseline and then the project for every scenario, prints one
table and writes ``bench/results/latest.json``.
"""
