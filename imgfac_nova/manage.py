"""The ``imgfac-nova-manage`` console script: the image records' database.

    imgfac-nova-manage [--config-file PATH] db sync      create or upgrade the schema
    imgfac-nova-manage [--config-file PATH] db version   print the schema's revision
    imgfac-nova-manage [--config-file PATH] workers list the jobboard's workers
                                                         and the builds each runs
"""
import sys

from imgfac_nova import cmdline

PROG = "imgfac-nova-manage"


def build_parser():
    parser = cmdline.parser(PROG, "Manage imgfac-nova's image record "
                                  "database ([database] connection).")
    groups = parser.add_subparsers(dest="group", metavar="GROUP",
                                   required=True)
    db = groups.add_parser("db", help="the database schema").add_subparsers(
        dest="command", metavar="COMMAND", required=True)
    db.add_parser("sync", help="create the schema, or upgrade it to this "
                               "release's, and import the records of the "
                               "storage path's .meta files")
    db.add_parser("version", help="print the schema's revision (none: no "
                                  "schema yet)")
    workers = groups.add_parser("workers", help="the jobboard's workers"
                                ).add_subparsers(dest="command",
                                                 metavar="COMMAND",
                                                 required=True)
    workers.add_parser("list", help="list the workers connected to the "
                                    "jobboard and the builds each runs, "
                                    "then the builds no worker holds")
    return parser


def _list_workers(conf):
    """One line per worker (``host:pid``) and per build it holds, then the
    builds waiting for a worker."""
    from imgfac_nova import jobboard
    with jobboard.Board(conf, PROG) as board:
        workers = board.workers()
        builds = board.builds()
    if workers is None:  # Redis: only the workers holding builds are known
        workers = []
    held = {}
    for image_id, owner in builds:
        held.setdefault(owner, []).append(image_id)
    for worker in workers + sorted(set(held) - set(workers) - {None}):
        print("worker %s: %d build(s)" % (worker, len(held.get(worker, ()))))
        for image_id in sorted(held.get(worker, ())):
            print("  %s" % image_id)
    print("waiting for a worker: %d build(s)" % len(held.get(None, ())))
    for image_id in sorted(held.get(None, ())):
        print("  %s" % image_id)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from oslo_config import cfg
    from imgfac_nova import config
    from imgfac_nova import jobboard
    from imgfac_nova import store
    try:
        conf = config.load(args.config_file, debug=args.debug, verbose=True)
        if args.group == "workers":
            if not jobboard.configured(conf):
                raise jobboard.JobboardError("no jobboard: set [jobboard] "
                                             "backend_url")
            _list_workers(conf)
            return cmdline.EXIT_OK
        image_store = config.image_store(conf)
        if args.command == "sync":
            before, after = image_store.sync()
            print("Database %s: schema %s%s" % (
                image_store.redacted_connection(), after,
                "" if before == after else " (was %s)" % (before or "none")))
        else:
            print(image_store.schema_version() or "none")
    except (cfg.Error, store.StoreError) as exc:
        return cmdline.error(PROG, exc)
    except jobboard.JobboardError as exc:
        return cmdline.error(PROG, exc, cmdline.EXIT_FAILED)
    return cmdline.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
