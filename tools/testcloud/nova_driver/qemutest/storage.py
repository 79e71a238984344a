"""Guest disks: Glance image cache, copy-on-write overlays, blank disks,
config drives and snapshot extraction (all through qemu-img)."""

import collections
import json
import os
import subprocess
import threading
import time

from oslo_log import log as logging

from nova.api.metadata import base as instance_metadata
from nova.virt import configdrive
from nova.virt import images

LOG = logging.getLogger(__name__)

GiB = 1024 ** 3


def qemu_img(*args):
    """Run qemu-img; return its stdout, raise with its stderr."""
    result = subprocess.run(('qemu-img',) + args, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError('qemu-img %s failed: %s'
                           % (args[0], result.stderr.strip()))
    return result.stdout


def disk_info(path):
    """qemu-img info as a dict (format, virtual-size, ...)."""
    return json.loads(qemu_img('info', '-U', '--output=json', path))


class ImageCache(object):
    """Glance images downloaded once into <instances_path>/_base."""

    def __init__(self, base_dir):
        self.base_dir = base_dir
        self._locks = collections.defaultdict(threading.Lock)

    def fetch(self, context, image_id):
        """Return the local path of a Glance image, downloading it once."""
        os.makedirs(self.base_dir, exist_ok=True)
        path = os.path.join(self.base_dir, image_id)
        with self._locks[image_id]:
            if not os.path.exists(path):
                LOG.info('Downloading image %s to the cache', image_id)
                partial = path + '.part'
                images.fetch(context, image_id, partial)
                os.replace(partial, path)
        return path

    def remove_unused(self, used_paths, min_age_seconds):
        """Delete cached images no guest uses, once old enough."""
        if not os.path.isdir(self.base_dir):
            return
        now = time.time()
        for name in os.listdir(self.base_dir):
            path = os.path.join(self.base_dir, name)
            if path in used_paths or name.endswith('.part'):
                continue
            with self._locks[name]:
                if now - os.path.getmtime(path) >= min_age_seconds:
                    LOG.info('Removing unused cached image %s', name)
                    os.unlink(path)


def create_overlay(base, path, size_bytes):
    """A qcow2 overlay on base, at least size_bytes large."""
    info = disk_info(base)
    size = max(size_bytes, info['virtual-size'])
    qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F',
             info['format'], path, str(size))


def create_blank(path, size_bytes):
    qemu_img('create', '-q', '-f', 'qcow2', path, str(size_bytes))


def create_config_drive(path, instance, network_info, injected_files,
                        admin_password):
    """An ISO9660 config drive (label config-2) built by Nova's own code."""
    extra_md = {}
    if admin_password:
        extra_md['admin_pass'] = admin_password
    metadata = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    with configdrive.ConfigDriveBuilder(instance_md=metadata) as builder:
        builder.make_drive(path)
    os.chmod(path, 0o600)


def extract_snapshot(disk, out_path):
    """Flatten a (possibly in-use) disk into a standalone qcow2."""
    qemu_img('convert', '-U', '-O', 'qcow2', disk, out_path)
