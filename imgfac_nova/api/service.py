"""Builds run by the daemon: one Builder per request over a shared store,
plugin set and slot pool, so at most ``max_concurrent_builds`` run at once;
with Keystone, each acts through the trust its caller gave at acceptance
(:mod:`trusts`), so it outlives the caller's token.

On start the daemon resumes the builds a killed predecessor had running
(see :mod:`imgfac_nova.resume`), marks FAILED those it cannot resume, and
sweeps what they left (``cleanup.sweep``, as ``imgfac-nova sweep``
does), in each caller's project through the trust its builds hold
(:mod:`trusts`); on stop it cancels running builds, which undo their steps
exactly as on Ctrl-C in the CLI, and waits for them.
"""
import logging
import threading

from imgfac_nova import build
from imgfac_nova import cleanup
from imgfac_nova import images
from imgfac_nova import jobboard
from imgfac_nova import jobs
from imgfac_nova import resume
from imgfac_nova.api import callbacks
from imgfac_nova.api import trusts
from imgfac_nova.plugins import manager
from novaimagebuilder import scrub

LOG = logging.getLogger(__name__)


class Stopping(Exception):
    """The daemon is shutting down and takes no new builds."""


class BuildService:
    def __init__(self, conf, store, plugins=None):
        self.conf = conf
        self.store = store
        self.plugins = plugins or manager.PluginManager(conf)
        self.slots = jobs.BuildSlots(conf.api.max_concurrent_builds)
        self.notifier = callbacks.Notifier(conf.api.callback_retry_seconds)
        self._jobs = {}  # image id -> Job, while it runs
        self._lock = threading.Lock()
        self._accepting = True
        #: The builds' Keystone trusts (None without Keystone: noauth).
        self.trusts = trusts.Trusts(conf) \
            if conf.api.auth_strategy == "keystone" else None
        #: The jobboard base-image builds are posted to, or None (they run
        #: here); JobboardError when it is configured and unreachable.
        self.board = jobboard.Board(conf, "imgfac-nova-api") \
            if jobboard.configured(conf) else None

    def builder(self, project_id=None, cloud_auth=None, on_change=None,
                url_check=None, trust_id=None):
        """A Builder for one caller; with ``trust_id`` (the caller's trust,
        recorded on its new images) it acts through the trust, not with
        ``cloud_auth``, so its builds outlive the caller's token and
        Keystone's allow_expired window, and a build that ends, COMPLETE or
        FAILED, releases it; without, a build on the caller's token says
        when the cloud will refuse that token (``[api]
        allow_expired_window``)."""
        window = None
        if trust_id:
            cloud_auth = trusts.auth_for(self.conf, trust_id)
        elif cloud_auth is not None:  # the caller's token alone
            window = self.conf.api.allow_expired_window

        def changed(record):
            if on_change is not None:
                on_change(record)
            if record.status not in images.ACTIVE_STATUSES:
                self.release(trust_id)
        return build.Builder(self.conf, self.store, self.plugins,
                             on_change=changed if trust_id else on_change,
                             slots=self.slots,
                             project_id=project_id, cloud_auth=cloud_auth,
                             url_check=url_check, strict_parameters=True,
                             trust_id=trust_id, token_window=window)

    def release(self, trust_id):
        """Delete ``trust_id`` unless a build holding it still runs."""
        if self.trusts is not None:
            self.trusts.release(self.store, trust_id)

    def start(self, start, project_id=None, cloud_auth=None, on_change=None,
              url_check=None):
        """Run ``start(builder)`` (a Builder verb) and track the Job.

        With Keystone, the caller's trust for the build is made first
        (TrustError when Keystone fails), and deleted again when the verb
        refuses. The verb's checks talk to Keystone, Nova and providers, so
        no lock is held while it runs; a build accepted while the daemon
        began to stop is cancelled at once."""
        if not self._accepting:
            raise Stopping("the daemon is stopping; it takes no new builds")
        trust_id = None
        if self.trusts is not None and cloud_auth is not None and project_id:
            trust_id = self.trusts.create(cloud_auth, project_id)
        try:
            job = start(self.builder(project_id, cloud_auth, on_change,
                                     url_check, trust_id))
        except BaseException:
            self.release(trust_id)
            raise
        return self._track(job)

    def post(self, template, values, project_id=None, cloud_auth=None,
             denied_networks=None):
        """Post a base-image build to the jobboard for a worker to run
        (Builder.queue_base_image), with the caller's trust made first as
        :meth:`start` does (the worker releases it when the build ends);
        returns its PENDING record."""
        if not self._accepting:
            raise Stopping("the daemon is stopping; it takes no new builds")
        trust_id = None
        if self.trusts is not None and cloud_auth is not None and project_id:
            trust_id = self.trusts.create(cloud_auth, project_id)
        try:
            return self.builder(project_id, cloud_auth, trust_id=trust_id) \
                .queue_base_image(template, values, lambda record:
                                  self.board.post(record, denied_networks))
        except BaseException:
            if trust_id:
                self.trusts.delete(trust_id)
            raise

    def _track(self, job):
        with self._lock:
            self._jobs = {i: j for i, j in self._jobs.items() if not j.wait(0)}
            for record in job.records:
                self._jobs[record.identifier] = job
            accepting = self._accepting
        if not accepting:
            job.cancel()
            job.wait()
        return job

    def recover(self):
        """Resume the builds a killed daemon ran, fail those that cannot
        be resumed and sweep what they left (the sweep logs each removal
        and refusal); returns ``sweep``'s ``[(where, Outcome)]``."""
        self._resume()
        found = cleanup.sweep(self.builder(), {})
        if self.trusts is not None:
            found += self._sweep_projects()
        refused = [outcome for _, outcome in found if outcome.error]
        if found:
            LOG.warning("Swept %d leftovers of earlier builds; %d could not "
                        "be removed", len(found), len(refused))
        return found

    def _resume(self):
        """Resume each build of a killed daemon that may be resumed (with
        Keystone, acting through its caller's trust); give up, naming why,
        those that cannot be (their secrets are not stored, no trust, a
        push that needs what the daemon does not have or may not use:
        :func:`resume.unattended`). Builds go in chain order (base, target,
        push): a push whose target is resumed now resumes once it ends."""
        checker = self.builder()
        resumed = {}  # image id -> its Job
        for record in sorted(self.store.list(), key=lambda record:
                             images.TYPES.index(record.type)):
            if record.status not in images.ACTIVE_STATUSES or \
                    checker.still_running(record) or not resume.resumable(
                        record, self.conf.resume_max_age):
                continue
            target = resumed.get(record.target_image_id) \
                if record.type == images.PROVIDER_IMAGE else None
            if target is None:
                resumed[record.identifier] = self._resume_one(record,
                                                              checker)
                continue
            threading.Thread(target=self._resume_after, daemon=True,
                             args=(target, record, checker),
                             name="resume-%s" % record.identifier[:8]).start()

    def _resume_after(self, job, record, checker):
        """Resume the push ``record`` once ``job`` (its target's) ends."""
        job.wait()
        self._resume_one(record, checker)

    def _resume_one(self, record, checker):
        """Resume ``record``'s build (its running Job), or abandon it
        naming why not (None)."""
        try:
            if self.trusts is not None and not record.trust_id:
                raise resume.ResumeError("it holds no trust to act for "
                                         "its caller")
            why = resume.unattended(
                record, checker.plugin(record.plugin),
                trusted=self.conf.api.auth_strategy == "noauth")
            if why:
                raise resume.ResumeError(why)
            job = self._track(self.builder(
                record.project_id, trust_id=record.trust_id)
                .resume(record.identifier))
            LOG.info("Resumed build %s", record.identifier)
            return job
        except Exception as exc:
            why = "not resumed when the daemon started (%s)" % \
                scrub.one_line(exc)
            LOG.warning("Build %s %s", record.identifier, why)
            checker.abandon(record.identifier, why)
            return None

    def _sweep_projects(self):
        """Sweep each project whose builds still hold a trust (unfinished,
        or failed before their trust was deleted) through one of those
        trusts, then release the trusts of the builds that ended."""
        held = {}
        for record in self.store.list():
            if record.trust_id:
                held.setdefault(record.project_id, []).append(record)
        found = []
        for project_id, records in sorted(held.items()):
            for record in records:
                try:
                    found += cleanup.sweep(self.builder(
                        project_id, trusts.auth_for(self.conf,
                                                    record.trust_id)), {})
                    break
                except Exception as exc:
                    LOG.warning("Sweeping project %s through the trust of "
                                "build %s failed: %s", project_id,
                                record.identifier, scrub.one_line(exc))
        for trust_id in {r.trust_id for rs in held.values() for r in rs}:
            self.release(trust_id)
        return found

    def shutdown(self, callback_timeout=10):
        """Take no new builds, cancel the running ones and wait for their
        clean-up, then give pending callbacks ``callback_timeout`` seconds."""
        with self._lock:
            self._accepting = False
            jobs = {id(j): j for j in self._jobs.values()}.values()
        for job in jobs:
            job.cancel()
        for job in jobs:
            while not job.wait(10.0):
                LOG.info("Waiting for build %s to clean up",
                         job.image.identifier)
        self.notifier.close(callback_timeout)
        if self.board is not None:
            self.board.close()
