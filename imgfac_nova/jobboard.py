"""The jobboard through which the CLI and the REST daemon hand base-image
builds to ``imgfac-nova-worker`` processes: TaskFlow's ZooKeeper or Redis
jobboard.

With ``[jobboard] backend_url`` unset, builds run in the process that
accepts them, as always. With it set, a base-image build is stored as a
PENDING record and posted as a job that carries the record's id and
nothing else; a worker claims the job (an ephemeral ZooKeeper node, gone
with the worker's session; on Redis a key that expires unless its worker
keeps extending it) and runs the build from its record, as a
resume does (:mod:`imgfac_nova.resume`). Secrets are never stored nor
posted, so a build that needs one is refused (Builder.queue_base_image).
"""
import logging
import threading
import urllib.parse

from oslo_config import cfg

from imgfac_nova import resume
from novaimagebuilder import scrub

LOG = logging.getLogger(__name__)
GROUP = "jobboard"
WORKER_GROUP = "worker"
#: The ZooKeeper path of the jobs when the URL names none.
DEFAULT_PATH = "/imgfac-nova/jobs"
#: What a claimed build's record names as its worker: "jobboard:host:pid"
#: (sweeps and resumes leave it to the jobboard: Builder.still_running).
OWNER_PREFIX = resume.QUEUED + ":"

_opts = [
    cfg.StrOpt("backend_url", secret=True,
               help="The jobboard builds are posted to and workers claim "
                    "them from: zookeeper://HOST:PORT[,HOST:PORT...][/PATH] "
                    "(path default %s) or redis://[:PASSWORD@]HOST:PORT[/DB]"
                    ". Unset: builds run in the process that accepts them."
                    % DEFAULT_PATH),
    cfg.FloatOpt("session_timeout", default=10.0, min=2.0,
                 help="Seconds a worker's ZooKeeper session outlives its "
                      "last contact with the server: a dead worker's "
                      "builds are claimed by another this long after it "
                      "died. ZooKeeper bounds it (2 to 20 of its ticks)."),
    cfg.FloatOpt("claim_expiry", default=30.0, min=2.0,
                 help="Redis: seconds a worker's claim lasts unless the "
                      "worker extends it (it does, every third of this): "
                      "a dead worker's builds are taken over this long "
                      "after it died."),
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
    """``(scheme, hosts, path)`` of a ``zookeeper://`` or ``redis://`` URL
    (a Redis URL's path is its database number); JobboardError when it is
    neither."""
    parts = urllib.parse.urlsplit(url)
    shown = scrub.scrub(url)
    if parts.scheme not in ("zookeeper", "redis"):
        raise JobboardError("[jobboard] backend_url %s: only zookeeper:// "
                            "and redis:// URLs are supported" % shown)
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts or "@" in parts.netloc and parts.scheme != "redis" or any(
            not host.rpartition(":")[2].isdigit() for host in hosts.split(",")):
        raise JobboardError("[jobboard] backend_url %s: give HOST:PORT[,"
                            "HOST:PORT...]" % shown)
    if parts.scheme == "redis":
        if "," in hosts or parts.path.strip("/") and \
                not parts.path.strip("/").isdigit():
            raise JobboardError("[jobboard] backend_url %s: give redis://"
                                "[:PASSWORD@]HOST:PORT[/DB]" % shown)
        return parts.scheme, hosts, parts.path.strip("/") or "0"
    return parts.scheme, hosts, parts.path.rstrip("/") or DEFAULT_PATH


class Board:
    """A connected TaskFlow jobboard (``with`` closes it)."""

    def __init__(self, conf, name="imgfac-nova"):
        from taskflow import exceptions
        register(conf)
        self.url = scrub.scrub(conf.jobboard.backend_url)
        self.scheme, self.hosts, path = parse_url(conf.jobboard.backend_url)
        self._timeout = conf.jobboard.connect_timeout
        #: Seconds a claim lasts unless extended (None: as long as the
        #: owner's session, on ZooKeeper).
        self.claim_expiry = None
        if self.scheme == "redis":
            self.claim_expiry = conf.jobboard.claim_expiry
            self.board = _redis_board(name, conf.jobboard.backend_url, path,
                                      self.claim_expiry, self._timeout)
            connect = self.board.connect
        else:
            from taskflow.jobs.backends import impl_zookeeper
            # No 'envi' four-letter command to ask the server's version:
            # ZooKeeper 3.5+ refuses it unless whitelisted.
            self.board = impl_zookeeper.ZookeeperJobBoard(name, {
                "hosts": self.hosts, "path": path, "check_compatible": False,
                "timeout": conf.jobboard.session_timeout})

            def connect():
                self.board.connect(timeout=self._timeout)
        try:
            connect()
        except exceptions.JobFailure as exc:
            self.board.close()
            cause = exc.cause if exc.cause is not None else exc
            raise JobboardError("cannot reach the jobboard at %s: %s" % (
                self.hosts, str(cause).strip() or type(cause).__name__)) \
                from None

    def keep_claim(self, job, done):
        """Extend ``job``'s claim until the Event ``done`` is set (Redis:
        every third of the claim's expiry; ZooKeeper: the session keeps
        it)."""
        if self.claim_expiry is None:
            return

        def extend():
            while not done.wait(self.claim_expiry / 3):
                try:
                    job.extend_expiry(self.claim_expiry)
                except Exception as exc:  # the next turn tries again
                    LOG.warning("Extending the claim of %s failed: %s",
                                job.name, exc)
        threading.Thread(target=extend, daemon=True,
                         name="claim-%s" % job.name).start()

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
        """Names (``host:pid``) of the workers connected now; None when the
        jobboard does not know (Redis)."""
        if self.scheme == "redis":
            return None
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


def _redis_board(name, url, db, claim_expiry, timeout):
    """TaskFlow's Redis jobboard whose claims expire after
    ``claim_expiry`` seconds unless extended (TaskFlow's conductor claims
    without an expiry, and a dead owner's claim would then last
    forever)."""
    from taskflow.jobs.backends import impl_redis

    class ExpiringClaims(impl_redis.RedisJobBoard):
        def claim(self, job, who, expiry=None):
            return super().claim(job, who, expiry=expiry or claim_expiry)
    parts = urllib.parse.urlsplit(url)
    conf = {"host": parts.hostname, "port": parts.port, "db": int(db),
            "namespace": "imgfac-nova", "socket_timeout": timeout,
            "socket_connect_timeout": timeout}
    if parts.password:
        conf["password"] = urllib.parse.unquote(parts.password)
    return ExpiringClaims(name, conf)
