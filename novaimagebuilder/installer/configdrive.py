"""Config drives in OpenStack's layout (ISO 9660, volume label ``config-2``).

Guests and installers read ``openstack/latest/meta_data.json`` (instance id,
hostname, public keys) and ``openstack/latest/user_data`` from it, whether Nova
made the drive or a local build did.
"""
import json
import os
import shutil
import subprocess
import tempfile

from novaimagebuilder import errors

_TOOLS = (("genisoimage", []), ("mkisofs", []), ("xorriso", ["-as", "mkisofs"]))


def _iso_tool():
    for name, prefix in _TOOLS:
        path = shutil.which(name)
        if path:
            return [path, *prefix]
    raise errors.BuildError("making a config drive needs genisoimage or xorriso; "
                            "install one of them")


def build(path, uuid, hostname, public_keys=None, user_data=None):
    """Write a config drive ISO to ``path``; ``public_keys`` maps key names to
    OpenSSH public keys."""
    meta = {"uuid": uuid, "name": hostname, "hostname": hostname,
            "launch_index": 0, "availability_zone": "nova",
            "public_keys": dict(public_keys or {}), "meta": {}}
    with tempfile.TemporaryDirectory(prefix="configdrive-") as root:
        latest = os.path.join(root, "openstack", "latest")
        os.makedirs(latest)
        with open(os.path.join(latest, "meta_data.json"), "w") as handle:
            json.dump(meta, handle)
        with open(os.path.join(latest, "network_data.json"), "w") as handle:
            json.dump({"links": [], "networks": [], "services": []}, handle)
        if user_data is not None:
            with open(os.path.join(latest, "user_data"), "wb") as handle:
                handle.write(user_data if isinstance(user_data, bytes)
                             else user_data.encode())
        result = subprocess.run(
            [*_iso_tool(), "-o", path, "-V", "config-2", "-J", "-R", "-quiet",
             root], capture_output=True, text=True)
    if result.returncode != 0:
        raise errors.BuildError("making the config drive failed: %s"
                                % (result.stderr.strip().splitlines() or ["?"])[-1])
    os.chmod(path, 0o600)
    return path
