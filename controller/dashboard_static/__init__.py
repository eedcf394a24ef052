"""Static files of the dashboard (a package so that setuptools ships them as package data)."""
