"""The ``imgfac-nova-api`` console script: the REST daemon on cheroot.

cheroot is a threaded, pure-Python HTTP/1.1 server with TLS: requests are
served concurrently (``[api] server_threads``) without a second process, so
the builds, their slots and their cancellation stay in this one process.
SIGTERM (or Ctrl-C) stops accepting requests, cancels the running builds
(each reverts what it made, as on Ctrl-C in the CLI) and exits.
"""
import gc
import logging
import signal
import sys
import threading

from imgfac_nova import cmdline

PROG = "imgfac-nova-api"
LOG = logging.getLogger(__name__)


def setup(config_files=(), debug=False):
    """``(conf, service, application)``: the configuration loaded, the
    builds of a killed predecessor failed and swept, the app assembled."""
    from imgfac_nova import config
    from imgfac_nova.api import conf as api_conf
    from imgfac_nova.api import deploy

    conf = config.load(config_files, debug=debug, verbose=True)
    api_conf.register(conf)
    deploy.check(conf)  # before the database is opened (or created)
    service = deploy.service(conf)
    application = deploy.deploy(conf, service)
    deploy.check_service_user(conf)
    try:
        service.recover()
    except Exception as exc:
        from novaimagebuilder import scrub
        LOG.error("Sweeping after earlier builds failed: %s",
                  scrub.one_line(exc))
        LOG.debug("Details:", exc_info=True)
    # What start-up made (libraries, configuration, the application) lives
    # as long as the daemon: kept out of the cycle collector's walks, which
    # a request making thousands of objects (a list of 10,000 records)
    # would otherwise spend as long on as on its answer.
    gc.collect()
    gc.freeze()
    return conf, service, application


def main(argv=None):
    parser = cmdline.parser(PROG, "The Image Factory REST v2 daemon of "
                                  "imgfac-nova.")
    args = parser.parse_args(argv)
    from cheroot import wsgi
    from oslo_config import cfg
    from imgfac_nova import jobboard
    try:
        conf, service, application = setup(args.config_file, args.debug)
        host, port = conf.api.bind_host, conf.api.bind_port
    except cfg.Error as exc:
        return cmdline.error(PROG, exc)
    except jobboard.JobboardError as exc:
        return cmdline.error(PROG, exc, cmdline.EXIT_FAILED)
    server = wsgi.Server((host, port), application,
                         numthreads=conf.api.server_threads,
                         server_name="imgfac-nova-api")
    scheme = "http"
    if conf.api.cert_file or conf.api.key_file:
        from cheroot.ssl import builtin
        server.ssl_adapter = builtin.BuiltinSSLAdapter(conf.api.cert_file,
                                                       conf.api.key_file)
        scheme = "https"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        server.prepare()
    except OSError as exc:
        return cmdline.error(PROG, "cannot listen on %s:%d: %s" % (
            host, port, exc.strerror or exc))
    threading.Thread(target=server.serve, name="http", daemon=True).start()
    LOG.info("imgfac-nova-api listening on %s://%s:%d (auth_strategy %s, "
             "max_concurrent_builds %d)", scheme, host, server.bind_addr[1],
             conf.api.auth_strategy, conf.api.max_concurrent_builds)
    while not stop.wait(1.0):
        pass
    LOG.info("Stopping: no new requests; cancelling running builds")
    server.stop()
    service.shutdown()
    LOG.info("Stopped")
    return cmdline.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
