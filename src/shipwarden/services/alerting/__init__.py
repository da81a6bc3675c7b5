"""Alerting use cases (E7, E8): the durable pipeline, silences, monitoring rules, NRQL conditions."""
