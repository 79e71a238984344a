import json
import os
import subprocess

from novaimagebuilder.installer import configdrive


def _read(iso, path):
    return subprocess.run(["isoinfo", "-R", "-i", iso, "-x", path],
                          capture_output=True, check=True).stdout


def test_config_drive_layout(tmp_path):
    iso = str(tmp_path / "cd.iso")
    configdrive.build(iso, "uuid-1", "host1",
                      public_keys={"k": "ssh-ed25519 AAAA test"},
                      user_data="#!/bin/sh\necho hi\n")
    label = subprocess.run(["isoinfo", "-d", "-i", iso], capture_output=True,
                           text=True, check=True).stdout
    assert "Volume id: config-2" in label
    meta = json.loads(_read(iso, "/openstack/latest/meta_data.json"))
    assert meta["uuid"] == "uuid-1"
    assert meta["hostname"] == "host1"
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA test"}
    assert _read(iso, "/openstack/latest/user_data") == b"#!/bin/sh\necho hi\n"
    assert oct(os.stat(iso).st_mode & 0o777) == "0o600"


def test_no_user_data(tmp_path):
    iso = str(tmp_path / "cd.iso")
    configdrive.build(iso, "u", "h")
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", iso],
                             capture_output=True, text=True).stdout
    assert "/openstack/latest/meta_data.json" in listing
    assert "user_data" not in listing
