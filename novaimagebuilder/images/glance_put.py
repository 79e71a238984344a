"""Image data sent to Glance with its length (``Content-Length``), not in
HTTP chunks: glanceclient's ``images.upload`` and ``images.stage`` wrap the
data in a generator, which requests sends chunked, and urllib3 then copies
every chunk once more to frame it (a second copy of every byte, seconds of
CPU a GiB on a loaded machine). Glance's answer is raised as glanceclient
would (``glanceclient.exc``), so callers see the same exceptions."""


class _Body:
    """``size`` bytes read from ``reader`` in chunks of ``chunk`` bytes: an
    iterable with a length, which requests sends as it comes with that
    ``Content-Length`` (no ``read``: urllib3 would read a file-like body
    16 KiB at a time)."""

    def __init__(self, reader, size, chunk):
        self.reader, self.size, self.chunk = reader, size, chunk

    def __len__(self):
        return self.size

    def __iter__(self):
        return iter(lambda: self.reader.read(self.chunk), b"")


def put(client, image_id, reader, size, chunk, stage=False):
    """PUT the ``size`` bytes of ``reader`` to Glance image ``image_id``'s
    data (its staging area with ``stage``) through the glanceclient
    ``client``'s session."""
    from glanceclient import exc
    adapter = client.http_client
    answer = adapter.session.put(
        "%s/v2/images/%s/%s" % (adapter.get_endpoint().rstrip("/"), image_id,
                                "stage" if stage else "file"),
        data=_Body(reader, size, chunk), raise_exc=False,
        headers={"Content-Type": "application/octet-stream"})
    if answer.status_code >= 400:
        raise exc.from_response(answer, answer.content)
