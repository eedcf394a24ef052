"""Thin command-line front ends: parse, call the core, print."""
