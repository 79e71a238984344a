"""``imgfac_nova.api.wsgi:application`` for WSGI servers (uwsgi, gunicorn).

The configuration file is ``$IMGFAC_NOVA_CONFIG_FILE``, else
/etc/imgfac-nova/imgfac-nova.conf. Builds run inside the server process: run
one process (with threads), so ``max_concurrent_builds`` holds and a stopped
server cancels its builds.
"""
import atexit
import os

from imgfac_nova.api import server


def init_application():
    files = [os.environ["IMGFAC_NOVA_CONFIG_FILE"]] \
        if os.environ.get("IMGFAC_NOVA_CONFIG_FILE") else []
    conf, service, application = server.setup(files)
    atexit.register(service.shutdown)
    return application


application = init_application()
