"""A real OpenStack (Keystone, Glance, Placement, Nova, Neutron) on loopback.

The control tool itself uses only the standard library and runs with the
system python3; the OpenStack services live in their own virtualenv under
the state directory, and the steps that talk to the OpenStack APIs
(`provision`) run with that virtualenv's python.
"""
