"""tools/bench's transfer case: our uploads, pushes, copy and download of
one file against raw HTTP to the same Glance, measured in turns.

The machines that run it are shared, and their load moves within minutes:
each sample of ours lies between two samples of each of its raw baselines
(a raw PUT, GET, or GET streamed into a PUT, with a token; and the same
with SHA-512 over the bytes, the least any client that verifies Glance's
hash does), and its ratio is to their mean. ``--rounds`` rounds give each
case that many ratios; their median is the figure, their range the spread.
"""
import hashlib
import os
import statistics
import struct
import tempfile
import threading
import time
import uuid

import bench_raw

GiB, MiB = 1024 ** 3, 1024 ** 2
#: The cases in the order they run: the name, the child, its arguments
#: (besides the cloud and the file or image), the raw baseline it is
#: timed between: a PUT of the file, a GET of the source image, or that
#: GET streamed into a PUT (a Glance-to-Glance copy: the same Glance
#: serves the download and takes the upload, on the same cores).
CASES = (("provider-push", "push", {}, "put"),
         ("provider-push-upload", "push", {"method": "upload"}, "put"),
         ("media-upload", "media", {}, "put"),
         ("provider-copy", "copy", {}, "copy"),
         ("download", "download", {}, "get"))
#: The baselines' samples: raw, and raw with SHA-512.
BASELINES = (("raw", False), ("raw_hashed", True))


def _context(directory, record):
    from imgfac_nova import jobs
    from imgfac_nova import store
    images = store.ImageStore(directory)
    images.add(record)
    return jobs.BuildContext(images, record.identifier, threading.Event())


def child_push(cloud, path, name, method="auto"):
    from imgfac_nova import images
    from imgfac_nova.plugins import formats
    target = images.ImageRecord(
        type=images.TARGET_IMAGE, data=path, status=images.COMPLETE,
        properties={"disk_format": "iso", "container_format": "bare"})
    pushed = images.ImageRecord(type=images.PROVIDER_IMAGE)
    with tempfile.TemporaryDirectory(prefix="imgfac-bench-store-") as store:
        ctx = _context(store, pushed)
        plugin = formats.DiskFormats()
        parameters = {"image_name": name, "import_method": method,
                      "upload_timeout": 3600}
        started = time.monotonic()
        plugin.check_provider("@" + cloud, None, parameters)
        plugin.push_image_to_provider(ctx, "@" + cloud, None, target,
                                      parameters)
        seconds = time.monotonic() - started
        image = ctx._store.get(pushed.identifier).identifier_on_provider
    return {"seconds": seconds, "image": image}


def child_copy(cloud, image, name):
    """The provider push of a target made in the cloud (its Glance image
    ``image``) to the same cloud under another name: a Glance-to-Glance
    copy."""
    from imgfac_nova import images
    from imgfac_nova.plugins import formats
    target = images.ImageRecord(
        type=images.TARGET_IMAGE, status=images.COMPLETE, properties={
            "disk_format": "iso", "container_format": "bare",
            images.GLANCE_ID_PROPERTY: image,
            "glance_cloud": {"cloud": cloud}})
    pushed = images.ImageRecord(type=images.PROVIDER_IMAGE)
    with tempfile.TemporaryDirectory(prefix="imgfac-bench-store-") as store:
        ctx = _context(store, pushed)
        plugin = formats.DiskFormats()
        parameters = {"image_name": name, "upload_timeout": 600,
                      "upload_timeout_per_gib": 120}
        started = time.monotonic()
        plugin.check_provider("@" + cloud, None, parameters)
        plugin.push_image_to_provider(ctx, "@" + cloud, None, target,
                                      parameters)
        seconds = time.monotonic() - started
        copied = ctx._store.get(pushed.identifier).identifier_on_provider
    return {"seconds": seconds, "image": copied}


def child_media(cloud, path, digest):
    from novaimagebuilder.machines import nova
    from novaimagebuilder.machines import nova_connect
    started = time.monotonic()  # its login too, as the raw PUT's
    conn = nova_connect.connect(cloud)
    backend = nova.NovaBackend(conn, "bench-" + uuid.uuid4().hex[:8], None)
    image = backend._media_image("iso", digest, lambda: path, "iso", "bare")
    return {"seconds": time.monotonic() - started, "image": image}


def child_download(cloud, image):
    from imgfac_nova import images
    from imgfac_nova.plugins import formats
    base = images.ImageRecord(
        type=images.BASE_IMAGE, status=images.COMPLETE,
        parameters={"cloud": cloud},
        properties={images.GLANCE_ID_PROPERTY: image})
    target = images.ImageRecord(type=images.TARGET_IMAGE)
    with tempfile.TemporaryDirectory(prefix="imgfac-bench-store-") as store:
        ctx = _context(store, target)
        started = time.monotonic()
        formats.fetch_base(ctx, base, {})
        seconds = time.monotonic() - started
    return {"seconds": seconds}


def import_modules(case):
    """Import what the transfer child ``case`` uses before its clock
    starts, as a build's process has long done when its bytes move (on a
    loaded machine importing openstacksdk, glanceclient and TaskFlow,
    whose engine imports networkx, takes seconds: that is no part of a
    transfer); the raw baselines import only what they use, so their
    peak RSS is a bare script's."""
    import openstack.config  # noqa: F401
    import requests  # noqa: F401
    if case.startswith("raw-"):
        return
    import glanceclient.v2.client  # noqa: F401
    import openstack.connection  # noqa: F401
    import taskflow.engines.action_engine.engine  # noqa: F401
    from imgfac_nova.db import flows  # noqa: F401
    from imgfac_nova.plugins import formats  # noqa: F401
    from imgfac_nova.plugins import provider  # noqa: F401
    from imgfac_nova.plugins import provider_access  # noqa: F401
    from novaimagebuilder import engine  # noqa: F401
    from novaimagebuilder.flows import push  # noqa: F401
    from novaimagebuilder.images import download  # noqa: F401
    from novaimagebuilder.images import glance  # noqa: F401
    from novaimagebuilder.images import transfer  # noqa: F401
    from novaimagebuilder.machines import nova  # noqa: F401


def iso_header(size):
    """The first 34 KiB of an ISO 9660 image of ``size`` bytes: Glance
    checks that an image's bytes match its disk_format, and every upload
    here is an ISO, like the install media."""
    descriptor = bytearray(2048)
    descriptor[0:7] = b"\x01CD001\x01"
    descriptor[80:88] = struct.pack("<I", size // 2048) + struct.pack(
        ">I", size // 2048)
    descriptor[128:132] = struct.pack("<H", 2048) + struct.pack(">H", 2048)
    return bytes(32 * 1024) + bytes(descriptor)


def sample_file(path, size):
    """``size`` bytes: an ISO header, then 1 MiB of random data every
    16 MiB, the rest zeros written out (not sparse), so reading it costs
    what an image does."""
    block, zeros = os.urandom(MiB), bytes(15 * MiB)
    block = iso_header(size) + block[len(iso_header(size)):]
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(block[:left])
            left -= MiB
            if left > 0:
                handle.write(zeros[:left])
                left -= 15 * MiB


def delete_image(cloud, image):
    from novaimagebuilder.images import glance
    from imgfac_nova.plugins import provider_access
    conn = provider_access.connect(
        provider_access.parse_provider("@" + cloud), None)
    glance.delete(conn.glance, image)


CHILDREN = {"raw-put": bench_raw.child_raw_put,
            "raw-get": bench_raw.child_raw_get,
            "raw-copy": bench_raw.child_raw_copy,
            "push": child_push, "copy": child_copy, "media": child_media,
            "download": child_download}


class _Rounds:
    """The samples of one size: ours and the baselines beside each."""

    def __init__(self, run, cloud, path):
        self._run, self.cloud, self.path = run, cloud, path
        self.name = "imgfac-nova-bench-%s" % uuid.uuid4().hex[:8]
        #: The first raw PUT's image: the copy's and the downloads' source.
        self.source = None
        #: Per case, one (ours, before, after) a round.
        self.samples = {}

    def run(self, child, **arguments):
        """One sample, begun with no dirty pages: the bytes an earlier
        sample wrote (1 GiB to Glance's store, and a download's file) are
        written back about 30 s later, in whichever sample runs then, unless
        they are flushed (os.sync) before it."""
        os.sync()
        return self._run(child, **arguments)

    def baselines(self, kind):
        """A raw and a hashed sample of the baseline ``kind`` (see
        :data:`CASES`); the images they make are deleted, but the first
        PUT's: the source of the copy and the download."""
        found = {}
        for sample, hashed in BASELINES:
            if kind == "put":
                found[sample] = self.run("raw-put", cloud=self.cloud,
                                         path=self.path, name=self.name,
                                         hashed=hashed)
            elif kind == "copy":
                found[sample] = self.run("raw-copy", cloud=self.cloud,
                                         image=self.source, name=self.name,
                                         hashed=hashed)
            else:
                down = self.path + ".down"
                found[sample] = self.run("raw-get", cloud=self.cloud,
                                         image=self.source, path=down,
                                         hashed=hashed)
                os.unlink(down)
            made = found[sample].get("image")
            if made and self.source is None:
                self.source = made
            elif made:
                delete_image(self.cloud, made)
        return found

    def measure(self, digest):
        """One round: each case between two samples of its baselines (one
        case's after is the next one's before when they share it)."""
        before, kind = None, None
        for case, child, extra, baseline in CASES:
            if baseline != kind:
                before, kind = self.baselines(baseline), baseline
            name = self.name + "-" + case
            arguments = {"push": {"path": self.path, "name": name},
                         "media": {"path": self.path, "digest": digest},
                         "copy": {"image": self.source, "name": name},
                         "download": {"image": self.source}}[child]
            ours = self.run(child, cloud=self.cloud, **arguments, **extra)
            if ours.get("image"):
                delete_image(self.cloud, ours["image"])
            after = self.baselines(baseline)
            self.samples.setdefault(case, []).append((ours, before, after))
            before = after


def _ratios(samples, kind):
    """Per round, the mean of the baseline ``kind`` before and after our
    sample over our sample's seconds."""
    return [(before[kind]["seconds"] + after[kind]["seconds"]) / 2 /
            ours["seconds"] for ours, before, after in samples]


def case_transfer(opts, work, figures, run):
    """For each size, ``opts.rounds`` rounds of every case between its
    baselines (``run(child, **arguments)`` runs one child); a row per
    case: our median seconds and the baselines', the median ratio to the
    hashed and to the raw baseline with their range over rounds, our peak
    RSS and the baselines'."""
    rows = []
    for size_gib in opts.sizes:
        size = int(size_gib * GiB)
        tag = "%gGiB" % size_gib
        path = os.path.join(work, "sample.raw")
        sample_file(path, size)
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        rounds = _Rounds(run, opts.cloud, path)
        loads = []
        try:
            for _ in range(opts.rounds):
                loads.append(round(os.getloadavg()[0], 2))
                rounds.measure(digest)
        finally:
            if rounds.source:
                delete_image(opts.cloud, rounds.source)
            os.unlink(path)
        figures.setdefault("transfer_load", {})[tag] = loads
        for case, samples in rounds.samples.items():
            key = "%s-%s" % (case, tag)
            rows += _case_figures(figures, key, samples)
        rows.append(("  load per round", " / ".join(
            "%.1f" % load for load in loads), "", ""))
        opts.save()
    return rows


def _case_figures(figures, key, samples):
    """Record one case's figures under ``key``; its row."""
    seconds = {"ours": [ours["seconds"] for ours, _, _ in samples]}
    for kind, _ in BASELINES:
        seconds[kind] = [side[kind]["seconds"] for _, before, after in samples
                         for side in (before, after)]
    ratios = {kind: _ratios(samples, kind) for kind, _ in BASELINES}
    rss = max(ours["peak_rss_mb"] for ours, _, _ in samples)
    raw_rss = max(side[kind]["peak_rss_mb"] for _, before, after in samples
                  for side in (before, after) for kind, _ in BASELINES)
    median = {kind: statistics.median(values)
              for kind, values in ratios.items()}
    figures.setdefault("transfer_ratio", {})[key] = round(median["raw"], 3)
    figures.setdefault("transfer_ratio_verified", {})[key] = round(
        median["raw_hashed"], 3)
    figures.setdefault("peak_rss_mb", {})[key] = rss
    figures.setdefault("transfer", {})[key] = {
        "seconds": {kind: [round(s, 2) for s in values]
                    for kind, values in seconds.items()},
        "ratios": {kind: [round(r, 3) for r in values]
                   for kind, values in ratios.items()},
        "raw_peak_rss_mb": raw_rss}

    def spread(kind):
        return "%.2fx %s (%.2f-%.2f)" % (
            median[kind], "sha512" if kind == "raw_hashed" else "raw",
            min(ratios[kind]), max(ratios[kind]))
    return [(key, "%.1f s (raw %.1f, sha512 %.1f)" % tuple(
        statistics.median(seconds[kind])
        for kind in ("ours", "raw", "raw_hashed")),
        spread("raw_hashed"),
        "%s, %.0f MB (raw %.0f)" % (spread("raw"), rss, raw_rss))]
