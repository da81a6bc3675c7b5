"""Database drivers (MariaDB), local instances, backup tools and the TCP listener (E1, E9, E10)."""
