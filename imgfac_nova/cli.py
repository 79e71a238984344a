"""The ``imgfac-nova`` command, with Image Factory's verbs and flags: its
command line in :mod:`cli_args`, the verbs that build in :mod:`cli_builds`,
the others here.

Exit status: 0 when the image is COMPLETE (or the command succeeded), 1 when a
build FAILED or a template does not validate, 2 for usage errors and bad input
(nothing is created then). Results go to stdout; logs and progress to stderr.
Heavy libraries are imported only once a verb runs, so ``--help`` is quick.
"""
import dataclasses
import gc
import json
import os
import signal
import sys
import time

from imgfac_nova import cli_args
from imgfac_nova import cli_builds
from imgfac_nova import cli_setup
from imgfac_nova.cli_setup import UsageError
from imgfac_nova.cmdline import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def main(argv=None):
    args = cli_args.build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _VERBS[args.verb](args)
    except UsageError as exc:
        return cli_setup.error(exc, EXIT_USAGE)
    except KeyboardInterrupt:
        return cli_setup.error("interrupted", EXIT_FAILED)
    except BrokenPipeError:
        # The reader went away (``imgfac-nova images | head``): nothing to
        # say, and nothing more may go to that pipe, even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        import logging
        from imgfac_nova import store
        from novaimagebuilder import scrub
        logging.getLogger(__name__).debug("Command failed", exc_info=True)
        if isinstance(exc, (store.StoreError, OSError)):
            return cli_setup.error(scrub.one_line(exc), EXIT_USAGE)
        return cli_setup.error("unexpected error: %s (run with --debug for "
                               "details)" % scrub.one_line(exc), EXIT_FAILED)


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _images(args):
    # A listing makes thousands of records and no garbage cycles to speak
    # of: it runs without the cycle collector, which would otherwise walk
    # every object of the libraries it imports again and again (a twentieth
    # of the command's time over 10,000 records).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _list_images(args)
    finally:
        if collecting:
            gc.enable()


def _list_images(args):
    try:
        query = json.loads(args.query)
    except ValueError as exc:
        raise UsageError("the query is not JSON: %s" % exc.msg) from None
    if not isinstance(query, dict):
        raise UsageError("the query must be a JSON object, e.g. "
                         "'{\"type\": \"BaseImage\"}'")
    records = cli_setup.image_store(cli_setup.conf(args)).list_once(
        query, None if args.output == "json" else ("percent_complete",
                                                   "status_detail"))
    if args.output == "json":
        print(json.dumps([r.to_dict() for r in records], indent=2,
                         sort_keys=True))
        return EXIT_OK
    if records:
        print("\n".join("%s  %-13s %-12s %3d%%  %s  %s" % (
            r.identifier, r.type, r.status, r.percent_complete, r.created,
            r.error or r.activity or "") for r in records))
    return EXIT_OK


def _delete(args):
    from imgfac_nova import cleanup
    from imgfac_nova import images
    from imgfac_nova import store
    conf = cli_setup.conf(args)
    credentials = cli_setup.credentials(args.credentials)
    builder = cli_setup.builder(conf)
    try:
        record = cleanup.delete(builder, args.id, cli_setup.values(args),
                                provider=args.provider,
                                credentials=credentials)
    except store.NotFound as exc:
        raise UsageError(str(exc)) from None
    if args.output == "json":
        print(json.dumps(record.to_dict(), indent=2, sort_keys=True))
    elif record.status == images.DELETED:
        print("Deleted %s %s" % (record.type, record.identifier))
    else:
        print("Deleting %s %s FAILED: %s" % (record.type, record.identifier,
                                             record.error))
    return EXIT_OK if record.status == images.DELETED else EXIT_FAILED


def _plugins(args):
    from imgfac_nova.plugins import manager
    conf = cli_setup.conf(args)
    plugins = manager.PluginManager(conf)
    found = plugins.all()
    if args.id:
        if args.id not in found:
            try:
                plugins.get(args.id)
            except manager.PluginError as exc:
                raise UsageError(str(exc)) from None
        found = {args.id: found[args.id]}
    rows = []
    for name, cls in sorted(found.items()):
        info = cls.info.to_dict()
        info["name"] = name
        info["parameters"] = [
            {"name": p.name, "type": p.type, "default": p.default,
             "secret": p.secret, "help": p.help} for p in cls.parameters]
        rows.append(info)
    if args.output == "json":
        print(json.dumps(rows if not args.id else rows[0], indent=2,
                         sort_keys=True))
    else:
        for info in rows:
            _print_plugin(info, detailed=bool(args.id))
    if not args.id:
        for name, reason in sorted(plugins.broken.items()):
            print("%s: BROKEN: %s" % (name, reason), file=sys.stderr)
    return EXIT_OK


def _print_plugin(info, detailed):
    targets = ", ".join(
        "/".join(str(p) if p is not None else "*" for p in t)
        if isinstance(t, list) else t for t in info["targets"])
    print("%-12s %-5s %-8s %s (targets: %s)" % (
        info["name"], info["type"], info["version"], info["description"],
        targets))
    if detailed:
        print("  maintainer: %s\n  license: %s" % (info["maintainer"],
                                                   info["license"]))
        for p in info["parameters"]:
            print("  --parameter %s (%s%s%s): %s" % (
                p["name"], p["type"],
                ", default %s" % p["default"] if p["default"] is not None
                else "", ", secret" if p["secret"] else "", p["help"]))


def _resume(args):
    from imgfac_nova import resume
    from imgfac_nova import store
    conf = cli_setup.conf(args)
    if not args.abandon:
        template = cli_setup.load_template(args.template, conf) \
            if args.template else None
        credentials = cli_setup.credentials(args.credentials)
        return cli_builds.start(args, conf, lambda b, v: b.resume(
            args.id, v, template, credentials=credentials))
    builder = cli_setup.builder(conf)
    try:
        builder.abandon(args.id)
    except (resume.ResumeError, store.NotFound) as exc:
        raise UsageError(str(exc)) from None
    print("Abandoned image %s" % args.id)
    return _swept(builder, args)


def _sweep(args):
    builder = cli_setup.builder(cli_setup.conf(args))
    return _swept(builder, args)


def _swept(builder, args):
    """Sweep (``sweep``'s arguments, or none), print what it removed."""
    from imgfac_nova import cleanup
    from novaimagebuilder import errors
    from novaimagebuilder import sweep
    values = cli_setup.values(args)
    dry_run = getattr(args, "dry_run", False)
    try:
        found = cleanup.sweep(builder, values, dry_run=dry_run)
        if getattr(args, "jeos", False):
            found += [(name, sweep.Outcome(sweep.Leftover(
                entry.build or "-", "JEOS cache entry", entry.id, entry.name,
                role=sweep.JEOS_CACHE))) for name, entry in cleanup.remove_jeos(
                    builder, values, dry_run=dry_run)]
    except errors.BuildError as exc:
        raise UsageError(str(exc)) from None
    verb = "Would remove" if dry_run else "Removed"
    left = [(where, outcome) for where, outcome in found if outcome.error]
    for where, outcome in found:
        if not outcome.error:
            print("%s (%s): %s" % (verb, where, outcome.leftover))
    for where, outcome in left:
        print("Could not remove (%s): %s: %s" % (where, outcome.leftover,
                                                 outcome.error),
              file=sys.stderr)
    if not found:
        print("Nothing to sweep")
    return EXIT_FAILED if left else EXIT_OK


def _jeos(args):
    from imgfac_nova import cleanup
    from novaimagebuilder import errors
    builder = cli_setup.builder(cli_setup.conf(args))
    values = cli_setup.values(args)
    try:
        if args.remove:
            for name, entry in cleanup.remove_jeos(builder, values,
                                                   args.remove):
                print("Removed (%s): %s %s" % (name, entry.id, entry.name))
            return EXIT_OK
        rows = [(name, entry) for name, cache in cleanup.jeos_caches(builder, values)
                for entry in cache.entries()]
    except errors.BuildError as exc:
        raise UsageError(str(exc)) from None
    rows.sort(key=lambda row: row[1].created, reverse=True)
    if args.output == "json":
        print(json.dumps([dict(dataclasses.asdict(entry), plugin=name)
                          for name, entry in rows], indent=2, sort_keys=True))
        return EXIT_OK
    for name, entry in rows:
        print("%-5s %s  %-20s %s  %s  key %s  build %s" % (
            name, time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.created)),
            entry.name, _size(entry.size), entry.id, entry.key[:12],
            entry.build or "-"))
    if not rows:
        print("The JEOS cache is empty")
    return EXIT_OK


def _size(size):
    return "%6.1f GiB" % (size / 1024 ** 3) if size else "      ? GiB"


def _validate(args):
    from imgfac_nova import config
    from imgfac_nova import template
    from imgfac_nova.template_xml import TemplateError
    if args.install_script:
        return _show_install_script(args)
    limits = config.template_limits(cli_setup.conf(args))
    results = []
    for path in args.templates:
        try:
            tdl = template.load_template(path, limits)
        except TemplateError as exc:
            results.append({"template": path, "valid": False,
                            "error": str(exc)})
        else:
            results.append({"template": path, "valid": True,
                            "summary": tdl.summary()})
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["valid"]:
                print("%s: OK" % result["template"])
                for line in result["summary"]:
                    print("  " + line)
            else:
                print(result["error"], file=sys.stderr)
    return EXIT_OK if all(r["valid"] for r in results) else EXIT_FAILED


def _show_install_script(args):
    """The install script of a build of the template, as the build would
    choose the plugin, type its parameters and make or check the script."""
    from imgfac_nova import parameters
    from imgfac_nova.plugins import common
    from imgfac_nova.plugins import manager
    from novaimagebuilder import errors
    from novaimagebuilder.scripts import installscript
    if len(args.templates) != 1:
        raise UsageError("--install-script takes one template")
    conf = cli_setup.conf(args)
    tdl = cli_setup.load_template(args.templates[0], conf)
    values = cli_setup.values(args)
    try:
        _, _, typed = cli_setup.builder(conf).os_plugin_for(tdl, values)
        text, kind = common.install_script(tdl, typed)
    except (manager.PluginError, parameters.ParameterError,
            errors.BuildError) as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(installscript.for_display(text, kind, tdl))
    print("install script kind: %s (%s)" % (
        kind or "unknown", "given" if typed.get("install_script")
        else "generated"), file=sys.stderr)
    return EXIT_OK


_VERBS = {
    "base_image": cli_builds.base_image,
    "target_image": cli_builds.target_image,
    "provider_image": cli_builds.provider_image,
    "images": _images,
    "delete": _delete,
    "plugins": _plugins,
    "sweep": _sweep,
    "resume": _resume,
    "jeos": _jeos,
    "validate": _validate,
}


if __name__ == "__main__":
    sys.exit(main())
