"""Thin `gsfc-tf` sub-commands: each parses arguments and calls the public API."""
