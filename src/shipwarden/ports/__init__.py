"""Ports: the small Protocols services depend on; adapters implement them.

A port imports only the domain, so a service written against one never learns which
database engine, proxy or storage is behind it (``bootstrap`` picks).
"""
