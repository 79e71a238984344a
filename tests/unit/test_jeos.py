"""The JEOS cache: its key, expiry, the pipeline's hits and misses, and the
local directory cache (with the real qemu-img)."""
import dataclasses
import json
import os
import shutil
import subprocess

import pytest

from imgfac_nova import template as tdl
from novaimagebuilder import errors
from novaimagebuilder.images import jeos
from novaimagebuilder.machines import local
from novaimagebuilder.installer import media
from novaimagebuilder import runner
from tests.unit import test_pipeline

SUMS = {"kernel": "a" * 64, "ramdisk": "b" * 64}
SCOPE = {"backend": "local", "memory_mb": 1024, "cpus": 1}
PARAMETERS = {"default_user": "debian", "disk_size": 10 * 1024 ** 3,
              "command_prefix": "sudo"}


def _template(version="12", rootpw="pw"):
    return tdl.parse_template(
        "<template><name>j</name><os><name>Debian</name>"
        "<version>%s</version><arch>x86_64</arch>"
        "<install type='url'><url>http://example.com/tree/</url></install>"
        "<rootpw>%s</rootpw></os></template>" % (version, rootpw))


def _key(template=None, parameters=None, sums=None, scope=None):
    return jeos.key(template or _template(), parameters or PARAMETERS,
                    sums or SUMS, scope or SCOPE)


def test_key_is_stable_and_does_not_show_the_password():
    first = _key()
    assert first == _key()
    assert len(first) == 64 and int(first, 16) >= 0
    assert "pw" not in first


@pytest.mark.parametrize("change", [
    {"template": _template(version="13")},
    {"template": _template(rootpw="other")},
    {"parameters": dict(PARAMETERS, default_user="admin")},
    {"parameters": dict(PARAMETERS, disk_size=20 * 1024 ** 3)},
    {"parameters": dict(PARAMETERS, install_script="d-i x string y\n")},
    {"parameters": dict(PARAMETERS, ssh_public_key="ssh-ed25519 AAAA k")},
    {"sums": dict(SUMS, ramdisk="c" * 64)},
    {"scope": dict(SCOPE, memory_mb=2048)},
], ids=["os-version", "rootpw", "default-user", "disk-size", "script",
        "ssh-public-key", "media", "scope"])
def test_what_shapes_the_install_changes_the_key(change):
    assert _key(**change) != _key()


@pytest.mark.parametrize("parameters", [
    dict(PARAMETERS, command_prefix=None),
    dict(PARAMETERS, install_kernel="http://mirror2/linux"),
    dict(PARAMETERS, keep_on_failure=True, ssh_timeout=5),
], ids=["command-prefix", "kernel-url", "build-options"])
def test_what_does_not_shape_the_install_keeps_the_key(parameters):
    assert _key(parameters=parameters) == _key()


def test_proxies_shape_only_a_generated_install():
    given = dict(PARAMETERS, install_script="poweroff\n")
    for proxy in ({"http_proxy": "http://p:3128/"}, {"proxy_persist": True}):
        assert _key(parameters=dict(PARAMETERS, **proxy)) != _key()
        assert _key(parameters=dict(given, **proxy)) == \
            _key(parameters=given)


def _entry(name, age, now=1_000_000.0):
    return jeos.Entry("k", name, "Debian 12", now - age)


def test_policy_expires_by_age_and_count_oldest_first():
    now = 1_000_000.0
    entries = [_entry("new", 10), _entry("mid", 100), _entry("old", 1000),
               _entry("ancient", 10 ** 6)]
    policy = jeos.Policy(max_age=5000, max_entries=2)
    assert [e.id for e in policy.expired(entries, now)] == ["ancient", "old"]
    assert [e.id for e in policy.expired(entries, now, keep={"old"})] == [
        "ancient"]
    assert jeos.Policy(max_age=0, max_entries=10).expired(entries, now) == []
    assert policy.usable(entries[2], now)
    assert not policy.usable(entries[3], now)
    assert jeos.Policy(max_age=0).usable(entries[3], now)


class MemoryCache(jeos.Cache):
    """A cache in a dict; ``broken`` makes add() fail."""

    where = "memory"

    def __init__(self, broken=False):
        self.stored, self.broken, self.removed = {}, broken, []

    def entries(self):
        return list(self.stored.values())

    def find(self, key):
        return next((e for e in self.stored.values() if e.key == key), None)

    def add(self, captured, key, name, build):
        if self.broken:
            raise errors.BuildError("the cache is read-only")
        entry = jeos.Entry(key, "cached-%d" % len(self.stored), name, 2e9,
                           build)
        self.stored[entry.id] = entry
        return entry

    def remove(self, entry):
        self.removed.append(entry.id)
        self.stored.pop(entry.id, None)


def _run(backend, cache_dir, cache, policy=None, **parameters):
    run = runner.Pipeline(backend, media.MediaCache(str(cache_dir)),
                          jeos_cache=cache, jeos_policy=policy,
                          build_id="b1")
    return run.run(test_pipeline.TEMPLATE,
                   dict({"install_script": "disk /dev/vda\n"}, **parameters))


fakes = test_pipeline.fakes


def test_a_miss_installs_and_keeps_the_jeos_then_a_hit_skips_the_installer(
        fakes):
    cache = MemoryCache()
    first = test_pipeline.Recorder()
    result = _run(first, fakes, cache)
    assert first.calls == [
        "prepare_media", "boot_installer", "wait_installer", "capture_jeos",
        "delete_installer", "boot_guest", "wait_guest", "capture_image",
        "delete_guest"]  # the JEOS is not discarded: it is the entry now
    assert result.jeos == {"cache": "stored", "jeos": "cached-0"}
    [entry] = cache.entries()
    assert (entry.name, entry.build) == ("Debian 12 x86_64", "b1")

    second = test_pipeline.Recorder()
    result = _run(second, fakes, cache)
    assert second.calls == ["boot_guest", "wait_guest", "capture_image",
                            "delete_guest"]
    assert result.jeos == {"cache": "hit", "jeos": "cached-0"}
    assert "install" not in result.timings
    assert cache.removed == []


def test_jeos_cache_false_installs_and_keeps_nothing(fakes):
    cache = MemoryCache()
    _run(test_pipeline.Recorder(), fakes, cache)
    backend = test_pipeline.Recorder()
    result = _run(backend, fakes, cache, jeos_cache=False)
    assert "boot_installer" in backend.calls
    assert backend.calls[-1] == "discard_jeos"
    assert result.jeos == {"cache": "off"}
    assert len(cache.entries()) == 1


def test_a_changed_os_misses(fakes, monkeypatch):
    cache = MemoryCache()
    _run(test_pipeline.Recorder(), fakes, cache)
    monkeypatch.setattr(test_pipeline, "TEMPLATE", dataclasses.replace(
        test_pipeline.TEMPLATE, os=dataclasses.replace(
            test_pipeline.TEMPLATE.os, version="13")))
    backend = test_pipeline.Recorder()
    assert _run(backend, fakes, cache).jeos["cache"] == "stored"
    assert "boot_installer" in backend.calls
    assert len(cache.entries()) == 2


def test_a_failed_customization_keeps_the_cached_jeos(fakes):
    cache = MemoryCache()
    backend = test_pipeline.Recorder()
    with pytest.raises(errors.BuildError, match="boom"):
        _run(backend, fakes, cache, command_prefix="fail-customize")
    assert "discard_jeos" not in backend.calls
    assert backend.alive == {"jeos"} and len(cache.entries()) == 1


def test_a_failed_build_from_a_hit_keeps_the_entry(fakes):
    cache = MemoryCache()
    _run(test_pipeline.Recorder(), fakes, cache)
    backend = test_pipeline.Recorder()
    with pytest.raises(errors.BuildError, match="boom"):
        _run(backend, fakes, cache, command_prefix="fail-customize")
    assert "boot_installer" not in backend.calls
    assert not [c for c in backend.calls if c.startswith("discard_")]
    assert [e.id for e in cache.entries()] == ["cached-0"]


def test_a_cache_that_cannot_store_discards_the_jeos(fakes):
    backend = test_pipeline.Recorder()
    with pytest.raises(errors.BuildError, match="read-only"):
        _run(backend, fakes, MemoryCache(broken=True))
    assert backend.calls[-1] == "discard_jeos"
    assert backend.alive == set()


def test_an_expired_entry_is_not_used_and_is_pruned(fakes):
    cache = MemoryCache()
    _run(test_pipeline.Recorder(), fakes, cache)
    [old] = cache.entries()
    cache.stored[old.id] = dataclasses.replace(old, created=1.0)
    backend = test_pipeline.Recorder()
    policy = jeos.Policy(max_age=86400, max_entries=10)
    result = _run(backend, fakes, cache, policy=policy)
    assert "boot_installer" in backend.calls
    assert result.jeos["cache"] == "stored"
    assert cache.removed == [old.id]
    assert [e.created for e in cache.entries()] == [2e9]


# -- the local directory cache, with the real qemu-img -------------------------

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img is not installed")


def _disk(path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path),
                    "64M"], check=True)
    return str(path)


@needs_qemu_img
def test_local_cache_stores_links_finds_and_removes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    captured = _disk(work / "jeos.qcow2")
    cache = local.JeosCache(str(tmp_path / "cache"))
    entry = cache.add(captured, "k1", "Debian 12 x86_64", "b1")
    assert os.path.samefile(entry.id, captured)  # a link, not a copy
    os.unlink(captured)  # the build's work directory goes
    found = cache.find("k1")
    assert (found.id, found.name, found.build) == (entry.id, "Debian 12 "
                                                   "x86_64", "b1")
    assert cache.find("k2") is None
    assert [e.key for e in cache.entries()] == ["k1"]
    cache.remove(found)
    assert cache.entries() == [] and cache.find("k1") is None
    assert os.listdir(tmp_path / "cache") == []


@needs_qemu_img
def test_local_cache_removes_a_broken_entry_and_skips_half_written_ones(
        tmp_path):
    cache = local.JeosCache(str(tmp_path / "cache"))
    entry = cache.add(_disk(tmp_path / "a.qcow2"), "k1", "D", "b1")
    with open(entry.id, "r+b") as handle:  # no longer a qcow2
        handle.write(b"\0" * 4096)
    assert cache.find("k1") is None
    assert not os.path.exists(entry.id)
    # a .qcow2 whose .json was never written is no entry
    shutil.copyfile(_disk(tmp_path / "b.qcow2"), tmp_path / "cache" /
                    "k2.qcow2")
    (tmp_path / "cache" / "k3.json").write_text(json.dumps({"name": "x"}))
    assert cache.entries() == []


@needs_qemu_img
def test_local_guest_boots_from_its_own_link_of_a_cache_entry(tmp_path,
                                                              monkeypatch):
    cache = local.JeosCache(str(tmp_path / "cache"))
    entry = cache.add(_disk(tmp_path / "a.qcow2"), "k1", "D", "b1")
    work = tmp_path / "work"
    work.mkdir()
    backend = local.LocalBackend(str(work), "tcg")
    started = []
    monkeypatch.setattr(local.qemu.VM, "start",
                        lambda vm: started.append(vm) or vm)
    backend.boot_guest(entry.id, "root", "ssh-ed25519 AAAA k")
    cache.remove(entry)  # pruned while the guest runs
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", "--backing-chain",
         str(work / "guest.qcow2")], check=True, capture_output=True,
        text=True).stdout)
    assert info[0]["backing-filename"] == str(work / "jeos.qcow2")
    assert info[1]["format"] == "qcow2"  # still readable
