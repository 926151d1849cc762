"""Simulated detector modules: separate processes that speak the module UDP protocol to the DAQ."""
