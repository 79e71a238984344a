"""The Image Factory REST v2 daemon (``imgfac-nova-api``).

A small WSGI service over the same Builder and ImageStore the CLI uses:
``router`` maps (method, path) to the ``handlers``, ``deploy`` wraps them in
request-id and auth middleware, ``policy`` decides who sees what, ``service``
runs the builds (bounded, cancelled on shutdown, swept after a crash),
``callbacks`` tells clients about status changes and ``server`` is the
console script.
"""
