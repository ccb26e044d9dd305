"""Search spaces for sweeps, as YAML files beside this module."""
