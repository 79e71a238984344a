"""ML2 mechanism driver that binds every port, with no L2 agent behind it.

The test cloud has no virtual switch: each guest is a QEMU process with
user-mode networking, reachable on its fixed (loopback) address through a
port forward made by the compute driver. Neutron still owns the address
management (networks, subnets, ports, security groups, floating IPs); this
driver only completes the port binding Nova asks for, with a plain "tap"
VIF, and marks the port ACTIVE since nothing else will.
"""
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api

VIF_TYPE = portbindings.VIF_TYPE_TAP
VIF_DETAILS = {portbindings.CAP_PORT_FILTER: False}


class BindAllMechanismDriver(api.MechanismDriver):
    """Bind any port on any host to the first segment offered."""

    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], VIF_TYPE, VIF_DETAILS,
                                status=constants.PORT_STATUS_ACTIVE)
            return
