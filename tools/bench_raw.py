"""tools/bench's raw transfer baselines: the least a client that moves an
image's bytes to or from Glance does, with requests and a token from
openstacksdk's configuration only (so a baseline's peak RSS is a bare
script's), with or without SHA-512 over the bytes (what checking Glance's
hash costs): a PUT of a file, a GET to a file, and a GET streamed into a
PUT (a Glance-to-Glance copy)."""
import contextlib
import hashlib
import os
import queue
import threading
import time

#: Reads and writes of the raw HTTP baseline.
RAW_CHUNK = 1024 ** 2


def _session(cloud):
    import openstack.config
    config = openstack.config.OpenStackConfig().get_one(cloud=cloud)
    return config, config.get_session()


def _glance_url(cloud):
    config, session = _session(cloud)
    url = session.get_endpoint(service_type="image",
                               interface=config.interface,
                               region_name=config.region_name)
    return session, url.rstrip("/")


class _HashedFile:
    """A file read for an upload and hashed as it is read (the verified
    raw baseline: what any client that checks Glance's hash must do)."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def read(self, size=-1):
        data = self.handle.read(size)
        if self.digest is not None:
            self.digest.update(data)
        return data


@contextlib.contextmanager
def _raw_image(url, headers, name, disk_format="iso",
               container_format="bare"):
    """A new private Glance image for the block to fill (its id); it must
    be active after the block, and is deleted when the block fails."""
    import requests
    created = requests.post(url + "/v2/images", headers=headers, json={
        "name": name, "disk_format": disk_format,
        "container_format": container_format, "visibility": "private"})
    created.raise_for_status()
    image_id = created.json()["id"]
    try:
        yield image_id
        status = requests.get(url + "/v2/images/" + image_id,
                              headers=headers).json()["status"]
        if status != "active":
            raise SystemExit("a raw transfer left the image %s" % status)
    except BaseException:
        requests.delete(url + "/v2/images/" + image_id, headers=headers)
        raise


def child_raw_put(cloud, path, name, hashed=False):
    import requests
    started = time.monotonic()
    session, url = _glance_url(cloud)
    headers = {"X-Auth-Token": session.get_token()}
    with _raw_image(url, headers, name) as image_id, \
            open(path, "rb") as handle:
        put = requests.put(
            url + "/v2/images/%s/file" % image_id, data=_HashedFile(
                handle, hashlib.sha512() if hashed else None),
            headers=dict(headers, **{
                "Content-Type": "application/octet-stream",
                "Content-Length": str(os.path.getsize(path))}))
        put.raise_for_status()
    return {"seconds": time.monotonic() - started, "image": image_id}


def child_raw_get(cloud, image, path, hashed=False):
    import requests
    digest = hashlib.sha512() if hashed else None
    started = time.monotonic()
    session, url = _glance_url(cloud)
    with requests.get(url + "/v2/images/%s/file" % image, stream=True,
                      headers={"X-Auth-Token": session.get_token()}) as got:
        got.raise_for_status()
        with open(path, "wb") as handle:
            for chunk in got.iter_content(RAW_CHUNK):
                if digest is not None:
                    digest.update(chunk)
                handle.write(chunk)
    return {"seconds": time.monotonic() - started}


class _Sized:
    """An iterable body with a length: requests sends it as it comes with
    that ``Content-Length``."""

    def __init__(self, chunks, size):
        self.chunks, self.size = chunks, size

    def __len__(self):
        return self.size

    def __iter__(self):
        return self.chunks


def child_raw_copy(cloud, image, name, hashed=False):
    """The Glance image ``image`` copied to a new image ``name`` by hand:
    its record read, a new image made, its bytes streamed from a GET into
    the new image's PUT (a thread reading ahead, as a shell pipe would),
    with SHA-512 over them (``hashed``) checked against the source's."""
    import requests
    started = time.monotonic()
    session, url = _glance_url(cloud)
    headers = {"X-Auth-Token": session.get_token()}
    source = requests.get(url + "/v2/images/" + image, headers=headers)
    source.raise_for_status()
    source = source.json()
    digest = hashlib.sha512() if hashed else None
    with _raw_image(url, headers, name, source["disk_format"],
                    source["container_format"]) as copied, \
            requests.get(url + "/v2/images/%s/file" % image, stream=True,
                         headers=headers) as got:
        got.raise_for_status()
        ahead = queue.Queue(maxsize=8)

        def fetch():
            for chunk in got.iter_content(RAW_CHUNK):
                ahead.put(chunk)
            ahead.put(None)

        def chunks():
            for chunk in iter(ahead.get, None):
                if digest is not None:
                    digest.update(chunk)
                yield chunk

        threading.Thread(target=fetch, daemon=True).start()
        put = requests.put(
            url + "/v2/images/%s/file" % copied,
            data=_Sized(chunks(), source["size"]),
            headers=dict(headers,
                         **{"Content-Type": "application/octet-stream"}))
        put.raise_for_status()
        if digest is not None and \
                digest.hexdigest() != source["os_hash_value"]:
            raise SystemExit("raw copy: the bytes are not the source's")
    return {"seconds": time.monotonic() - started, "image": copied}
