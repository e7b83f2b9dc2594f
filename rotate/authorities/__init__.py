"""Authorities: where an account's password is checked and changed (one module per type)."""
