"""The jobboard through which the CLI hands base-image builds to
``imgfac-nova-worker`` processes: TaskFlow's ZooKeeper jobboard.

With ``[jobboard] backend_url`` unset, builds run in the process that
accepts them, as always. With it set, a base-image build is stored as a
PENDING record and posted as a job that carries the record's id and
nothing else; a worker claims the job (an ephemeral ZooKeeper node, gone
with the worker's session) and runs the build from its record, as a
resume does (:mod:`imgfac_nova.resume`). Secrets are never stored nor
posted, so a build that needs one is refused (Builder.queue_base_image).
"""
import socket
import urllib.parse

from oslo_config import cfg

from imgfac_nova import resume

GROUP = "jobboard"
WORKER_GROUP = "worker"
#: The ZooKeeper path of the jobs when the URL names none.
DEFAULT_PATH = "/imgfac-nova/jobs"
#: What a claimed build's record names as its worker: "jobboard:host:pid"
#: (sweeps and resumes leave it to the jobboard: Builder.still_running).
OWNER_PREFIX = resume.QUEUED + ":"

_opts = [
    cfg.StrOpt("backend_url",
               help="The jobboard builds are posted to and workers claim "
                    "them from: zookeeper://HOST:PORT[,HOST:PORT...][/PATH] "
                    "(path default %s). Unset: builds run in the process "
                    "that accepts them." % DEFAULT_PATH),
    cfg.FloatOpt("session_timeout", default=10.0, min=2.0,
                 help="Seconds a worker's ZooKeeper session outlives its "
                      "last contact with the server: a dead worker's "
                      "builds are claimed by another this long after it "
                      "died. ZooKeeper bounds it (2 to 20 of its ticks)."),
    cfg.FloatOpt("connect_timeout", default=10.0, min=0.5,
                 help="Seconds to wait for the jobboard when a process "
                      "starts before it gives up."),
    cfg.IntOpt("max_claims", default=3, min=1,
               help="Times a build may be claimed without ending (its "
                    "worker died or lost its claim) before the next "
                    "claim ends it FAILED. A worker stopped by SIGTERM "
                    "hands its builds back without using a claim."),
]

_worker_opts = [
    cfg.IntOpt("max_concurrent_builds", default=2, min=1,
               help="Builds one imgfac-nova-worker runs at once."),
]


class JobboardError(Exception):
    """The jobboard is misconfigured or cannot be reached (one line)."""


def list_opts():
    return [(GROUP, _opts), (WORKER_GROUP, _worker_opts)]


def register(conf):
    conf.register_opts(_opts, group=GROUP)
    conf.register_opts(_worker_opts, group=WORKER_GROUP)


def configured(conf):
    """Whether builds go to a jobboard (``[jobboard] backend_url`` set)."""
    register(conf)
    return bool(conf.jobboard.backend_url)


def parse_url(url):
    """``(hosts, path)`` of a ``zookeeper://`` URL; JobboardError when it is
    not one."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "zookeeper":
        raise JobboardError("[jobboard] backend_url %r: only zookeeper:// "
                            "URLs are supported" % url)
    hosts = parts.netloc
    if not hosts or "@" in hosts or any(
            not host.rpartition(":")[2].isdigit() for host in hosts.split(",")):
        raise JobboardError("[jobboard] backend_url %r: give HOST:PORT[,"
                            "HOST:PORT...]" % url)
    return hosts, parts.path.rstrip("/") or DEFAULT_PATH


def owner_name():
    """This process as a claim's owner: ``host:pid``."""
    import os
    return "%s:%d" % (socket.gethostname(), os.getpid())


class Board:
    """A connected TaskFlow ZooKeeper jobboard (``with`` closes it)."""

    def __init__(self, conf, name="imgfac-nova"):
        from taskflow import exceptions
        from taskflow.jobs.backends import impl_zookeeper
        register(conf)
        self.url = conf.jobboard.backend_url
        self.hosts, path = parse_url(self.url)
        self._timeout = conf.jobboard.connect_timeout
        # No 'envi' four-letter command to check the server's version:
        # ZooKeeper 3.5+ refuses it unless whitelisted, and Debian's is 3.8.
        self.board = impl_zookeeper.ZookeeperJobBoard(name, {
            "hosts": self.hosts, "path": path, "check_compatible": False,
            "timeout": conf.jobboard.session_timeout})
        try:
            self.board.connect(timeout=self._timeout)
        except exceptions.JobFailure as exc:
            self.board.close()
            cause = exc.cause if exc.cause is not None else exc
            raise JobboardError("cannot reach the jobboard at %s: %s" % (
                self.hosts, str(cause).strip() or type(cause).__name__)) \
                from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.board.close()

    def post(self, record, denied_networks=None):
        """Post the build of ``record``: a job holding its id, and for an
        API caller's build the networks its URLs may not reach (the
        caller's URL policy: a list of CIDRs; None for the CLI's)."""
        self.board.post("build-%s" % record.identifier, details={
            "image_id": record.identifier,
            "denied_networks": denied_networks})

    def workers(self):
        """Names (``host:pid``) of the workers connected now."""
        from kazoo import client
        from kazoo import exceptions
        zk = client.KazooClient(hosts=self.hosts)
        zk.start(timeout=self._timeout)
        try:
            # Each conductor's ephemeral node: "<its name>@<host:pid>".
            return sorted(name.partition("@")[0] for name in zk.get_children(
                "%s/conductor" % self.board.entity_path))
        except exceptions.NoNodeError:
            return []  # no worker ever connected
        finally:
            zk.stop()
            zk.close()

    def builds(self):
        """``[(image id, owner or None)]`` of the jobs on the board."""
        return [((job.details or {}).get("image_id"),
                 self.board.find_owner(job))
                for job in self.board.iterjobs(ensure_fresh=True)]
