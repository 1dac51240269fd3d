"""Distributed configuration store adapters (one module per backend; Consul today)."""
