"""Disaster-recovery use cases (E6, E9, E10): backups, archiving, restore/PITR, verification,
failover and drills.  They depend on ``shipwarden.ports`` only; ``bootstrap`` supplies adapters."""
