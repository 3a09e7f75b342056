"""Compiled route table, path normalisation and rewrites."""
