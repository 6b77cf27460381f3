"""Provisioning: keys, certificates, enrollment bundles and preflight checks."""
