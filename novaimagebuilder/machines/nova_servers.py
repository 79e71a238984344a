"""The build's Nova servers: booting one (or adopting the one an earlier run
of the build booted), acting on it and waiting for its states, watching it
until its guest powers off, deleting it."""
import base64
import dataclasses
import re
import time

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.installer import installer_screen
from novaimagebuilder.machines import faults
from novaimagebuilder import retries
from novaimagebuilder import waiter

#: Nova's power_state of a guest that is off (nova.compute.power_state).
SHUTDOWN = 4
#: Seconds between two console reads while waiting for a guest to power
#: off (its status is polled more often), and the lines read when no
#: installer screen is watched (their change is the activity).
CONSOLE_EVERY = 10
CONSOLE_TAIL = 40


@dataclasses.dataclass
class Server:
    """A server this build made and what belongs only to it."""

    id: str
    name: str
    #: installer or guest: what else belongs to it follows (see Removal._parts).
    role: str
    #: Where SSH reaches it (the guest only; see nova_guest.choose_address).
    address: str | None = None
    #: Booted from the install ISO by a rescue (undone before a capture).
    rescued: bool = False
    #: The openstacksdk Server as it was when it became ACTIVE.
    found: object = None
    #: Its root volume, on a volume-backed build.
    volume: str | None = None

    def __str__(self):
        return "server %s (%s)" % (self.name, self.id)


def powered_off(server):
    """Stopped, or rescued with the guest powered off (Nova leaves a rescued
    server in RESCUE when its guest powers off; only its power_state says
    so)."""
    if server.status == "SHUTOFF":
        return True
    return (server.vm_state == "rescued" and server.task_state is None
            and server.power_state == SHUTDOWN)


def wait_server_gone(conn, server_id, timeout=300):
    """Wait until Nova no longer has the server (its ports are released by
    then). Status DELETED is not gone yet: nova-compute shows it before it
    gives back the server's placement allocation and removes it (seconds,
    in which it still counts). A deletion that fails puts it in ERROR with
    no task."""
    from openstack import exceptions as sdk

    def poll():
        try:
            return conn.compute.get_server(server_id)
        except sdk.NotFoundException:
            return None

    waiter.wait_for(
        "waiting for server %s to be deleted" % server_id, poll,
        lambda server: server is None,
        timeout=timeout,
        failed=lambda server: faults.server_error(server, conn)
        if server.status == "ERROR" and not server.task_state else None)


class Servers:
    """The servers of a :class:`nova.NovaBackend` (a mixin of it)."""

    def _tags(self):
        return [cloud.BUILD_TAG + "=" + self.build_id,
                cloud.OWNER_TAG + "=" + self.owner]

    def server_name(self, role):
        """The name of this build's server in ``role``."""
        return "%s%s-%s" % (cloud.NAME_PREFIX, self.build_id, role)

    def _boot(self, role, image_id, user_data=None, key_name=None,
              security_groups=None):
        attrs = dict(name=self.server_name(role), image_id=image_id,
                     flavor_id=self.flavor.id,
                     metadata={cloud.BUILD_TAG: self.build_id,
                               cloud.OWNER_TAG: self.owner},
                     config_drive=self.config_drive)
        if self.networks:
            attrs["networks"] = [{"uuid": n.id} for n in self.networks]
        if user_data:
            attrs["user_data"] = base64.b64encode(
                user_data.encode()).decode()
        if key_name:
            attrs["key_name"] = key_name
        if security_groups:
            attrs["security_groups"] = [{"name": g} for g in security_groups]
        if self.admin_password:
            attrs["admin_password"] = self.admin_password
        created = self._server_named(attrs["name"])
        if created is not None and (role != "installer" or
                                    created.status == "ERROR"):
            self.log.info("Deleting server %s (%s), left by an earlier run "
                          "of this build", created.name, created.id)
            self.delete_server(created.id)
            created = None
        volume = None
        if self.volumes:
            attrs["block_device_mapping"], volume = self.volumes.root(
                role, attrs.pop("image_id"),
                created.id if created is not None else None)
        if created is None:
            created = retries.send_once(
                "Nova refused to boot the %s" % role,
                lambda: self.conn.compute.create_server(**attrs),
                lambda: self._server_named(attrs["name"]),
                cancel=self.cancel, log=self.log)
            if volume:
                self.volumes.note_server(volume, created.id)
        else:
            self.log.info("Adopting server %s (%s), booted by an earlier run "
                          "of this build", created.name, created.id)
        server = Server(created.id, created.name, role,
                        rescued=created.vm_state == "rescued", volume=volume)
        found = waiter.wait_for(
            "waiting for %s to become ACTIVE" % server,
            lambda: self.conn.compute.get_server(server.id),
            lambda s: s.status == "ACTIVE" or (
                server.rescued and s.status == "RESCUE"),
            timeout=600, cancel=self.cancel,
            failed=lambda s: faults.server_error(s, self.conn)
            if s.status == "ERROR" else None)
        server.found = found
        return server

    def _server_named(self, name):
        """This build's server ``name`` (None: there is none)."""
        for found in self.conn.compute.servers(name="^%s$" % re.escape(name)):
            if (found.metadata or {}).get(cloud.BUILD_TAG) == self.build_id:
                return found
        return None

    def _act(self, what, server, send, task_state, vm_state):
        """Send a server action once (see retries.send_once): it was done
        when the server is in ``task_state`` or ``vm_state``."""
        def made():
            found = self.conn.compute.get_server(server.id)
            return True if found.task_state == task_state or \
                found.vm_state == vm_state else None
        retries.send_once(what, send, made, cancel=self.cancel, log=self.log)

    def delete_server(self, server_id):
        """Delete the server ``server_id`` and wait until it is gone."""
        self.conn.compute.delete_server(server_id, ignore_missing=True)
        wait_server_gone(self.conn, server_id)

    def _wait_state(self, server, vm_state, status):
        waiter.wait_for(
            "waiting for %s to become %s" % (server, status),
            lambda: self.conn.compute.get_server(server.id),
            lambda s: s.vm_state == vm_state and s.task_state is None,
            timeout=600, cancel=self.cancel,
            failed=lambda s: faults.server_error(s, self.conn)
            if s.status == "ERROR" else None)

    def wait_powered_off(self, machine, what, timeout, inactivity=None,
                         screen=None):
        """Poll the server's status (cheap: the API's database) every
        poll, its console (an RPC to nova-compute) every CONSOLE_EVERY
        seconds: its tail is the activity, or what ``screen`` reads."""
        console = {"read": None, "activity": None}

        def poll():
            server = self.conn.compute.get_server(machine.id)
            if powered_off(server):
                return server, None  # done: no console read to delay it
            now = time.monotonic()
            if console["read"] is None or \
                    now - console["read"] >= CONSOLE_EVERY:
                console["read"] = now
                if screen is None:
                    console["activity"] = self.console(machine,
                                                       CONSOLE_TAIL)
                else:
                    screen.update(self.console(
                        machine, installer_screen.CONSOLE_LINES))
                    console["activity"] = screen.activity
            return server, console["activity"]

        def failed(state):
            if state[0].status == "ERROR":
                return faults.server_error(state[0], self.conn)
            return screen and screen.stuck()

        waiter.wait_for(
            what, poll, lambda state: powered_off(state[0]),
            failed=failed,
            activity=lambda state: state[1], inactivity=inactivity,
            timeout=timeout, cancel=self.cancel)

    def power_off(self, machine):
        self._act("stopping %s" % machine, machine,
                  lambda: self.conn.compute.stop_server(machine.id),
                  "powering-off", "stopped")
        self.wait_powered_off(machine, "waiting for %s to stop" % machine, 300)

    def console(self, machine, lines=30):
        try:
            output = self.conn.compute.get_server_console_output(
                machine.id, length=lines)
        except Exception as exc:
            return "(console unavailable: %s)" % cloud.explain(exc)
        return output.get("output") or ""

    def adopt(self, identifier):
        """The server ``identifier`` (installer or guest) an earlier process
        of this build booted, with what belongs only to it (a server in
        ERROR too: waiting for it fails with Nova's fault)."""
        from openstack import exceptions as sdk
        try:
            found = self.conn.compute.get_server(identifier)
        except sdk.NotFoundException:
            found = None
        except sdk.HttpException as exc:
            raise errors.BuildError("looking up server %s: %s"
                                    % (identifier, cloud.explain(exc))) from None
        disk = self.volumes and cloud.call(
            "looking up the volume of server %s" % identifier,
            self.volumes.of_server, identifier)
        volume = disk and disk.id
        if found is not None and \
                (found.metadata or {}).get(cloud.BUILD_TAG) != self.build_id:
            raise errors.BuildError("server %s is not this build's"
                                    % identifier)
        deleting = found is None or found.task_state == "deleting" or \
            found.status in ("DELETED", "SOFT_DELETED")
        if deleting and volume:
            # A capture deletes the server to upload its volume.
            wait_server_gone(self.conn, identifier)
            return self._volume_left(identifier, disk)
        if found is None:
            raise errors.Gone("server %s is gone" % identifier)
        if deleting:
            raise errors.Gone("server %s is being deleted" % identifier)
        role = "guest" if found.name == self.server_name("guest") else \
            "installer"
        server = Server(found.id, found.name, role, found=found,
                        rescued=found.vm_state == "rescued", volume=volume)
        self.log.info("Going on with %s, booted by an earlier run of this "
                      "build (%s)", server, found.status)
        return server

    def _volume_left(self, server_id, volume):
        """The server ``server_id`` that a capture deleted to upload its
        ``volume`` (openstacksdk's), which is left: its capture goes on with
        the volume."""
        self.log.info("Going on with volume %s, the disk of server %s that "
                      "an earlier run of this build deleted to upload it",
                      volume.id, server_id)
        role = "guest" if volume.name == self.volumes.name("guest") else \
            "installer"
        return Server(server_id, "(deleted)", role, volume=volume.id)
