"""The ``imgfac-nova`` verbs that build: base, target and provider images,
each run here (or, with a jobboard, a base image posted and followed) until
it has ended, then shown."""
import contextlib
import json
import signal
import sys
import threading
import time

from imgfac_nova import cli_setup
from imgfac_nova.cli_setup import UsageError
from imgfac_nova.cmdline import EXIT_FAILED, EXIT_OK


def start(args, conf, verb):
    """Run ``verb(builder, values)`` to get a Job, wait for it, show the result."""
    from imgfac_nova import images
    from imgfac_nova import parameters
    from imgfac_nova.plugins import manager
    from imgfac_nova import progress as progress_display

    values = cli_setup.values(args)
    display = progress_display.Progress()
    builder = cli_setup.builder(conf, display)
    from novaimagebuilder import errors
    try:
        job = verb(builder, values)
    except (manager.PluginError, parameters.ParameterError,
            errors.BuildError) as exc:
        # Bad input, found by the builder or a plugin's check().
        raise UsageError(str(exc)) from None
    for record in job.records:
        _warn_exposed_secrets(builder, record, args)
    _wait(job)
    display.finish()
    record = builder.store.get(job.image.identifier)
    _show(args, record)
    return EXIT_OK if record.status == images.COMPLETE else EXIT_FAILED


def _warn_exposed_secrets(builder, record, args):
    from imgfac_nova import parameters
    plugin = builder.plugins.all().get(record.plugin)
    if plugin is not None:
        parameters.warn_exposed_secrets(
            plugin.parameters, getattr(args, "parameter_sources", None) or [],
            record.plugin)


@contextlib.contextmanager
def _interrupts():
    """An Event set by each Ctrl-C or SIGTERM while in the block.

    The signal handlers only set it: an exception raised inside a wait can
    corrupt the lock being waited on.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait(job):
    """Wait for a job; on Ctrl-C or SIGTERM ask it to stop and wait for its
    clean-up, so nothing it created is left behind."""
    with _interrupts() as stop:
        warned = 0
        while not job.wait(0.2):
            if stop.is_set():
                stop.clear()
                warned += 1
                print("\nimgfac-nova: interrupted; stopping the build and "
                      "cleaning up" if warned == 1 else
                      "imgfac-nova: still cleaning up, please wait",
                      file=sys.stderr)
                job.cancel()


def _show(args, record):
    from imgfac_nova import images
    if args.output == "json":
        print(json.dumps(record.to_dict(), indent=2, sort_keys=True))
        return
    kind = {"BaseImage": "base_image", "TargetImage": "target_image",
            "ProviderImage": "provider_image"}[record.type]
    print("============ Final Image Details ============")
    print("UUID: %s" % record.identifier)
    print("Type: %s" % kind)
    print("Status: %s" % record.status)
    print("Status Details: %s" % json.dumps(record.status_detail,
                                            sort_keys=True))
    if record.data:
        print("Image filename: %s" % record.data)
    glance_id = record.properties.get(images.GLANCE_ID_PROPERTY)
    if glance_id:
        print("Glance image id: %s" % glance_id)
    if record.log:
        print("Build log: %s" % record.log)
    if record.identifier_on_provider:
        print("Image ID on provider: %s" % record.identifier_on_provider)
    if record.status == images.COMPLETE:
        print("Image build completed SUCCESSFULLY!")
    else:
        print("Image build FAILED with error: %s" % record.error)


def base_image(args):
    from imgfac_nova import jobboard
    conf = cli_setup.conf(args)
    template = cli_setup.load_template(args.template, conf)
    if jobboard.configured(conf):
        return _post(args, conf, template)
    return start(args, conf, lambda b, v: b.base_image(template, v))


def _post(args, conf, template):
    """Post a base-image build to the jobboard, follow its record until a
    worker has ended it, show it; Ctrl-C or SIGTERM asks it to stop."""
    from imgfac_nova import images
    from imgfac_nova import jobboard
    from imgfac_nova import parameters
    from imgfac_nova import progress as progress_display
    from imgfac_nova import resume
    from imgfac_nova.plugins import manager
    from novaimagebuilder import errors
    values = cli_setup.values(args)
    display = progress_display.Progress()
    builder = cli_setup.builder(conf)
    try:
        with jobboard.Board(conf) as board:
            record = builder.queue_base_image(template, values, board.post)
    except jobboard.JobboardError as exc:
        return cli_setup.error(exc, EXIT_FAILED)
    except (manager.PluginError, parameters.ParameterError,
            errors.BuildError) as exc:
        raise UsageError(str(exc)) from None
    _warn_exposed_secrets(builder, record, args)
    with _interrupts() as stop:
        while record.status in images.ACTIVE_STATUSES:
            if stop.is_set():
                stop.clear()
                print("\nimgfac-nova: interrupted; asking the build to stop",
                      file=sys.stderr)
                if builder.store.modify(record.identifier, resume.drop_queued
                                        ).worker != resume.QUEUED:
                    builder.store.request_cancel(record.identifier)
            time.sleep(1.0)
            record = builder.store.get(record.identifier)
            display(record)
    display.finish()
    _show(args, record)
    return EXIT_OK if record.status == images.COMPLETE else EXIT_FAILED


def target_image(args):
    conf = cli_setup.conf(args)
    template = cli_setup.load_template(args.template, conf) if args.template else None
    return start(args, conf, lambda b, v: b.target_image(
        args.target, v, base_id=args.id, template=template))


def provider_image(args):
    conf = cli_setup.conf(args)
    if args.snapshot and not args.template:
        raise UsageError("--snapshot builds from a template: give --template")
    template = cli_setup.load_template(args.template, conf) if args.template else None
    credentials = cli_setup.credentials(args.credentials)
    return start(args, conf, lambda b, v: b.provider_image(
        args.target, args.provider, credentials, v, image_id=args.id,
        template=template, snapshot=args.snapshot))
