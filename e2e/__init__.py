"""End-to-end tests and the local control plane (``e2e.devcluster``) they run against."""
