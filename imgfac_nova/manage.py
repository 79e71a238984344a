"""The ``imgfac-nova-manage`` console script: the image records' database.

    imgfac-nova-manage [--config-file PATH] db sync      create or upgrade the schema
    imgfac-nova-manage [--config-file PATH] db version   print the schema's revision
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from oslo_config import cfg
    from imgfac_nova import config
    from imgfac_nova import store
    try:
        conf = config.load(args.config_file, debug=args.debug, verbose=True)
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
    return cmdline.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
