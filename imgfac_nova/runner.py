"""Running a build's steps in a job: each in its build log, a failure
marking its image and the steps after it FAILED in one line (the traceback
to the log only), success COMPLETE.  ``builder`` is the
:class:`imgfac_nova.build.Builder` whose steps they are.
"""
import contextlib
import logging
import os
import time

from imgfac_nova import images
from imgfac_nova import jobs
from imgfac_nova import resume
from novaimagebuilder import errors
from novaimagebuilder import scrub
from novaimagebuilder import sweep
from novaimagebuilder import tokens

LOG = logging.getLogger(__name__)


def start(builder, steps):
    worker = sweep.this_process()
    for record, _ in steps:
        if record.status == images.NEW:
            record.worker = worker
            record.status = images.PENDING
            record.status_detail = {"activity": "Waiting to start",
                                    "error": None}
            builder.store.add(record)
            if builder.on_change:
                builder.on_change(record)
    job = jobs.Job([r for r, _ in steps], lambda job: _run(builder, job, steps))
    if builder.slots is not None:
        builder.slots.enter(job)
    job.watch(builder.store)
    return job.start()


def _run(builder, job, steps):
    if builder.slots is None:
        return _run_steps(builder, job, steps)
    try:
        with builder.slots.hold(job):
            _run_steps(builder, job, steps)
    except jobs.BuildCancelled as exc:
        for record, _ in steps:
            if builder.store.get(record.identifier).status == images.PENDING:
                fail(builder, record, str(exc))


def _run_steps(builder, job, steps):
    failed = None
    for record, run in steps:
        if failed is not None:
            fail(builder, record, failed)
            continue
        failed = _run_step(builder, job, record, run)


def _run_step(builder, job, record, run):
    """Run one plugin step; returns None or a one-line reason it failed."""
    ctx = jobs.BuildContext(builder.store, record.identifier,
                            job.cancel_event, builder.on_change,
                            builder.url_check, builder.checkpoint, builder.claim)
    if builder.checkpoint is not None:
        ctx.owned = lambda: builder.store.get(
            record.identifier).worker == record.worker
    started = time.monotonic()
    with jobs.build_log(builder.store, record.identifier):
        builder.store.update(record.identifier,
                             log=builder.store.log_path(record.identifier))
        if builder.token_window is not None:
            warning = tokens.build_warning(
                builder.cloud_auth, builder.token_window, record.parameters)
            if warning:
                LOG.warning("Building %s %s: %s", record.type,
                            record.identifier, warning)
        try:
            ctx.check_cancelled()
            ctx.progress(0, "Starting %s" % record.type)
            run(ctx)
            ctx.check_cancelled()
        except errors.HandedBack as exc:
            why = str(exc)
            current = builder.store.modify(
                record.identifier, lambda current: resume.hand_back(
                    current, record.worker, why))
            LOG.warning("Building %s %s: %s at %d %%", record.type,
                        record.identifier, exc, current.percent_complete)
            return "%s %s %s" % (record.type, record.identifier, exc)
        except BaseException as exc:  # a build must never die silently
            reason = scrub.one_line(exc)
            if builder.token_window is not None:
                reason = tokens.explain_refusal(
                    reason, builder.cloud_auth, builder.token_window,
                    record.created)
            interrupted = isinstance(exc, (errors.Cancelled,
                                           KeyboardInterrupt))
            if interrupted:
                current = builder.store.get(record.identifier)
                reason = "interrupted at %d %%: %s" % (
                    current.percent_complete, current.activity)
            LOG.error("Building %s %s failed: %s", record.type,
                      record.identifier, reason)
            if not interrupted:  # where it stopped says it all
                LOG.info("Details of the failure:", exc_info=True)
            if ctx.owned is not None and not ctx.owned():
                LOG.warning("Leaving %s %s to the process that took it "
                            "over", record.type, record.identifier)
                return reason
            _remove_partial(ctx.body_path)
            fail(builder, record, reason)
            return "%s %s failed: %s" % (record.type, record.identifier,
                                         reason)
    fields = dict(status=images.COMPLETE, percent_complete=100,
                  status_detail={"activity": "Build complete", "error": None})
    if os.path.exists(ctx.body_path):
        fields["data"] = ctx.body_path
    done = builder.store.update(record.identifier, **fields)
    LOG.info("Built %s %s in %.1f s", record.type, record.identifier,
             time.monotonic() - started)
    if builder.on_change:
        builder.on_change(done)
    return None


def fail(builder, record, reason):
    reason = scrub.scrub(reason)
    current = builder.store.get(record.identifier)
    failed = builder.store.update(
        record.identifier, status=images.FAILED, data=None,
        status_detail={"activity": current.activity, "error": reason})
    if builder.on_change:
        builder.on_change(failed)


def _remove_partial(path):
    """A failed build leaves no image data behind."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
