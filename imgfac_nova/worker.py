"""The ``imgfac-nova-worker`` console script: a TaskFlow conductor that
claims base-image builds from the jobboard (:mod:`imgfac_nova.jobboard`)
and runs them, at most ``[worker] max_concurrent_builds`` at once.

A claimed build runs from its record as a resume does (Builder.resume),
so a build claimed again after its worker died goes on after its last
finished step. Before each step, and before each action in the cloud
(create, delete, capture: BuildRun.guard), the build asks whether this
worker still holds its claim (while the jobboard cannot be reached it
waits, up to the session timeout); when not, or before a step when the
worker is stopping (SIGTERM), the build stops there without undoing
anything, its job is given back, and another worker goes on with it
(running again the step that was interrupted). A build claimed more than ``[jobboard]
max_claims`` times without ending is FAILED with the reason.

    imgfac-nova-worker [--config-file PATH] [--debug]
"""
import logging
import os
import signal
import sys
import threading
import time

from imgfac_nova import cmdline

PROG = "imgfac-nova-worker"
#: Seconds a worker waits before it gives back a job it could not run.
RETRY_PAUSE = 5.0
LOG = logging.getLogger(__name__)


def _conductor_class():
    from taskflow.conductors.backends import impl_nonblocking

    class Conductor(impl_nonblocking.NonBlockingConductor):
        """Runs each claimed job with ``run(job)``: True consumes the job
        (the build ended), False gives it back."""

        def __init__(self, name, board, run, max_jobs):
            super().__init__(name, board, max_simultaneous_jobs=max_jobs,
                             wait_timeout=1.0)
            self._run = run

        def _dispatch_job(self, job):
            return self._run(job)
    return Conductor


class Worker:
    def __init__(self, conf, store, board, plugins=None):
        from imgfac_nova import jobboard
        from novaimagebuilder import sweep
        from imgfac_nova.plugins import manager
        self.conf = conf
        self.store = store
        self.board = board
        self.plugins = plugins or manager.PluginManager(conf)
        self.name = sweep.this_process()
        self.owner = jobboard.OWNER_PREFIX + self.name
        #: Set on SIGTERM: claim no more, hand the running builds back.
        self.stopping = threading.Event()
        self.conductor = _conductor_class()(
            self.name, board.board, self.run_job,
            conf.worker.max_concurrent_builds)

    def run(self):
        """Claim and run builds until :meth:`stop`; their builds handed
        back at their next step."""
        LOG.warning("Worker %s takes builds from %s", self.name,
                    self.board.url)
        threading.Thread(target=self._stay_listed, daemon=True,
                         name="listed").start()
        self.conductor.run()
        self.conductor.wait()

    def _stay_listed(self):
        """Register the worker again after its ZooKeeper session was lost
        (its node, which ``workers list`` reads, went with the session);
        registering an existing node changes nothing."""
        from taskflow import exceptions
        while not self.stopping.wait(self.conf.jobboard.session_timeout):
            try:
                self.board.board.register_entity(self.conductor.conductor)
            except exceptions.JobFailure as exc:
                LOG.debug("Registering the worker again: %s", exc)

    def stop(self):
        self.stopping.set()
        self.conductor.stop()

    def owns(self, job):
        """Whether the build of ``job`` may go on to its next step: this
        worker still holds its claim and is not stopping."""
        return not self.stopping.is_set() and self.holds(job)

    def holds(self, job):
        """Whether this worker still holds ``job``'s claim, asked before
        each step and each action in the cloud; while the jobboard cannot
        be asked, waits up to the session timeout (after which a claim
        would have expired)."""
        from taskflow import exceptions
        deadline = time.monotonic() + self.conf.jobboard.session_timeout
        while True:
            try:
                return self.board.board.find_owner(job) == self.name
            except exceptions.JobFailure as exc:
                if time.monotonic() > deadline:
                    LOG.warning("Giving up job %s: the jobboard cannot be "
                                "reached (%s)", job.name, exc)
                    return False
                time.sleep(1)

    def run_job(self, job):
        """Run the build of a claimed job; True when it ended (COMPLETE or
        FAILED: consume the job), False when it was handed back or could
        not be run now (the database unreachable, say: after a pause, the
        job goes back to the board for a later claim)."""
        try:
            return self._run_job(job)
        except Exception as exc:
            from novaimagebuilder import scrub
            LOG.error("Job %s: %s; giving it back", job.name,
                      scrub.one_line(exc))
            LOG.debug("Details:", exc_info=True)
            self.stopping.wait(RETRY_PAUSE)
            return False

    def _run_job(self, job):
        from imgfac_nova import images
        from imgfac_nova import store
        from novaimagebuilder import engine
        from novaimagebuilder import scrub
        image_id = (job.details or {}).get("image_id")
        try:
            record = self.store.get(image_id)
        except (store.NotFound, TypeError):
            LOG.warning("Job %s names no image of this store (%r): "
                        "dropped", job.name, image_id)
            return True
        if record.status not in images.ACTIVE_STATUSES:
            return True  # cancelled while queued, or ended elsewhere
        persistence = self.store.flow_persistence()
        claims = engine.count_claim(persistence, image_id)
        builder = self._builder(record, job, job.details.get(
            "denied_networks"))
        if claims > self.conf.jobboard.max_claims:
            builder.abandon(image_id, "claimed %d times without ending (its "
                            "workers died or lost their claims)"
                            % (claims - 1), owner=self.owner)
            return True
        LOG.info("Claimed build %s (claim %d)", image_id, claims)
        done = threading.Event()
        self.board.keep_claim(job, done)
        try:
            try:
                running = builder.resume(image_id, owner=self.owner)
            except Exception as exc:
                builder.abandon(image_id, "not started by worker %s (%s)" % (
                    self.name, scrub.one_line(exc)), owner=self.owner)
                return True
            running.wait()
        finally:
            done.set()
        ended = self.store.get(image_id).status not in images.ACTIVE_STATUSES
        if not ended and self.stopping.is_set():
            engine.count_claim(persistence, image_id, -1)  # handed back
        if ended and record.trust_id:
            from imgfac_nova.api import trusts
            trusts.Trusts(self.conf).release(self.store, record.trust_id)
        return ended

    def _builder(self, record, job, denied_networks):
        """A Builder of ``job``'s build, which stops when this worker loses
        the claim (before each step and each action in the cloud) or
        stops (before each step), acting for ``record``'s caller: through
        its Keystone
        trust when it holds one, else with the worker's own cloud
        configuration; an API caller's URLs checked as the API would
        (``denied_networks`` not None)."""
        from imgfac_nova import build
        url_check = None
        if denied_networks is not None:
            from imgfac_nova.api import conf as api_conf
            from novaimagebuilder import netguard
            api_conf.register(self.conf)
            url_check = netguard.AddressPolicy(
                denied_networks, self.conf.api.url_allowed_hosts).check
        auth = None
        if record.trust_id:
            from imgfac_nova.api import trusts
            auth = trusts.auth_for(self.conf, record.trust_id)
        return build.Builder(self.conf, self.store, self.plugins,
                             project_id=record.project_id, cloud_auth=auth,
                             trust_id=record.trust_id,
                             checkpoint=lambda: self.owns(job),
                             claim=lambda: self.holds(job),
                             url_check=url_check)


def build_parser():
    return cmdline.parser(PROG, "Run the base-image builds posted to the "
                                "jobboard ([jobboard] backend_url).")


def main(argv=None):
    args = build_parser().parse_args(argv)
    from oslo_config import cfg
    from imgfac_nova import config
    from imgfac_nova import jobboard
    from imgfac_nova import store
    try:
        conf = config.load(args.config_file, debug=args.debug, verbose=True)
        if not jobboard.configured(conf):
            raise jobboard.JobboardError("no jobboard: set [jobboard] "
                                         "backend_url")
        image_store = config.image_store(conf)
        image_store.open().flow_persistence()
        board = jobboard.Board(conf, PROG)
    except (cfg.Error, store.StoreError, jobboard.JobboardError) as exc:
        return cmdline.error(PROG, exc, cmdline.EXIT_FAILED)
    worker = Worker(conf, image_store, board)

    def stop(signum, frame):
        if not worker.stopping.is_set():
            LOG.warning("Stopping: no new builds; running ones are handed "
                        "back at their next step (signal again to stop now)")
            worker.stop()
            return
        # As after kill -9, but the claims go at once with the session:
        # another worker goes on with each build, running its step again.
        LOG.warning("Stopping now: the running builds' steps are left to "
                    "the next worker")
        board.close()
        os._exit(cmdline.EXIT_FAILED)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    thread = threading.Thread(target=worker.run, name="conductor")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    board.close()
    return cmdline.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
