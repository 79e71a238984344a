"""A bastion for functional tests: a network namespace with a real sshd.

``JumpBox`` makes a network namespace joined to this machine by a veth pair
(``HOST_IP`` here, ``JUMP_IP`` there) and runs /usr/sbin/sshd in it on
JUMP_IP:22, with its own host key and an authorized key for root.
``expose(address, target)`` makes ``address``:22 answer *inside the
namespace only* (a socat there) with what this machine reaches at
``target`` (a socat on HOST_IP relays to it): from this machine ``address``
stays whatever it is here, so only the jump host reaches the guest there.
Nothing leaves the machine: the veth pair ends in the namespace.
"""
import os
import random
import shutil
import subprocess
import uuid

import paramiko

from tests import poll

SSHD = "/usr/sbin/sshd"


def _run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


class JumpBox:
    def __init__(self, directory):
        self.directory = str(directory)
        tag = uuid.uuid4().hex[:6]
        self.netns = "imgfac-jump-" + tag
        self.veth = "ijh" + tag
        subnet = random.randrange(1, 255)
        self.host_ip = "100.127.%d.1" % subnet
        self.jump_ip = "100.127.%d.2" % subnet
        self.key = paramiko.ECDSAKey.generate(bits=256)
        self.key_path = os.path.join(self.directory, "jump_key")
        self.known_hosts = os.path.join(self.directory, "known_hosts")
        self.log_path = os.path.join(self.directory, "jump-sshd.log")
        self.processes = []

    def ns(self, *argv):
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self):
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name",
             self.veth + "j")
        _run("ip", "link", "set", self.veth + "j", "netns", self.netns)
        _run("ip", "addr", "add", self.host_ip + "/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        _run(*self.ns("ip", "addr", "add", self.jump_ip + "/30", "dev",
                      self.veth + "j"))
        _run(*self.ns("ip", "link", "set", self.veth + "j", "up"))
        _run(*self.ns("ip", "link", "set", "lo", "up"))
        host_key = os.path.join(self.directory, "jump_host_ed25519")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
        with open(host_key + ".pub") as stream:
            kind, data = stream.read().split()[:2]
        with open(self.known_hosts, "w") as stream:
            stream.write("%s %s %s\n" % (self.jump_ip, kind, data))
        self.key.write_private_key_file(self.key_path)
        authorized = os.path.join(self.directory, "authorized_keys")
        with open(authorized, "w") as stream:
            stream.write("%s %s jump\n" % (self.key.get_name(),
                                           self.key.get_base64()))
        config = os.path.join(self.directory, "jump_sshd_config")
        with open(config, "w") as stream:
            stream.write(
                "ListenAddress %s:22\nHostKey %s\nAuthorizedKeysFile %s\n"
                "PidFile %s\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "UsePAM no\nStrictModes no\nAllowTcpForwarding yes\n"
                "Subsystem sftp internal-sftp\n"
                "LogLevel VERBOSE\n" % (
                    self.jump_ip, host_key, authorized,
                    os.path.join(self.directory, "jump-sshd.pid")))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = open(self.log_path, "wb")
        sshd = self._spawn(self.ns(SSHD, "-D", "-e", "-f", config), log)
        poll.ssh_banner(self.jump_ip, 22, 15, sshd, self.log_path)
        return self

    def _spawn(self, argv, output=subprocess.DEVNULL):
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def expose(self, address, target):
        """``address``:22 inside the namespace relays to ``target`` (host,
        port) as this machine reaches it."""
        port = random.randrange(20000, 40000)
        self._spawn(["socat", "TCP-LISTEN:%d,bind=%s,fork,reuseaddr"
                     % (port, self.host_ip), "TCP:%s:%d" % target])
        _run(*self.ns("ip", "addr", "add", address + "/32", "dev", "lo"))
        self._spawn(self.ns("socat", "TCP-LISTEN:22,bind=%s,fork,reuseaddr"
                            % address, "TCP:%s:%d" % (self.host_ip, port)))

    def ssh_connections(self):
        """The established TCP connections to the jump sshd."""
        out = subprocess.run(
            self.ns("ss", "-Htn", "state", "established",
                    "( sport = :22 )"), capture_output=True, text=True,
            check=True).stdout
        return [line for line in out.splitlines()
                if (self.jump_ip + ":22") in line]

    def sshd_log(self):
        with open(self.log_path) as stream:
            return stream.read()

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        subprocess.run(["ip", "link", "del", self.veth],
                       stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.netns],
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.directory, ignore_errors=True)
