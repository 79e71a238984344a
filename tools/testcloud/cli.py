"""Command line: tools/test-cloud {up,down,status,env}."""
import argparse
import fcntl
import os
import sys

from testcloud.cloud import Cloud, CloudError
from testcloud.install import InstallError
from testcloud.layout import Layout
from testcloud.process import ServiceError


def say(message):
    print("test-cloud: %s" % message, file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="test-cloud",
        description="Real OpenStack services on loopback for imgfac-nova's "
                    "functional tests. State directory: $IMGFAC_TEST_CLOUD_DIR"
                    " (default /var/lib/imgfac-nova/test-cloud).")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install what is missing and start "
                                   "everything")
    up.add_argument("--no-guests", action="store_true",
                    help="skip building/uploading the test guest images")
    sub.add_parser("down", help="stop every service")
    sub.add_parser("status", help="state, pid and address of each service "
                                  "(exit 3 if any is not up)")
    sub.add_parser("env", help="print the shell exports for the clients")
    args = parser.parse_args(argv)

    cloud = Cloud(Layout(), say=say)
    if args.command == "env":
        print("\n".join(cloud.env_lines()))
        return 0
    if args.command == "status":
        rows = cloud.status()
        line = "%-17s %-8s %-8s %-32s %s"
        print(line % ("SERVICE", "STATE", "PID", "ADDRESS", "RSS(MiB)"))
        for row in rows:
            print(line % row)
        print("total RSS: %d MiB" % sum(r[4] for r in rows))
        return 0 if all(r[1] == "up" for r in rows) else 3
    if os.geteuid() != 0:
        say("must run as root (it installs packages and runs the services)")
        return 2
    try:
        cloud.layout.make_dirs()
        lock = open(cloud.layout.path("run", "test-cloud.lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)  # one up/down at a time
        if args.command == "up":
            cloud.up(guests=not args.no_guests)
        else:
            cloud.down()
    except (CloudError, InstallError, ServiceError, OSError) as e:
        say("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        say("interrupted; run it again to finish")
        return 130
    return 0
