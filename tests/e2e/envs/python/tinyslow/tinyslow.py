"""Installed from a source distribution whose build sleeps."""
VALUE = "tinyslow 1.0"
