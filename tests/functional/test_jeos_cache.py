"""The JEOS cache on the test cloud and locally: a repeat build reuses the
installed system (no installer machine at all), a change to what shapes the
install misses, and a cached JEOS that is gone is installed again."""
import os
import signal
import time

import pytest

from tests.functional import builds


def _build(config, params, directory, env, *extra, command=None,
           cleanup=None, conn=None):
    """Build; a ``cleanup`` stack gets the deletion of the image built in
    the cloud of ``conn`` (see builds.delete)."""
    template = builds.write_template(
        directory, **({"command": command} if command else {}))
    started = time.monotonic()
    result = builds.imgfac(config, "base_image",
                           *builds.with_install_script(params, directory),
                           *extra, template, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = builds.record(result)
    if cleanup is not None:
        cleanup.append(lambda: builds.delete(config, record, env, conn))
    return record, time.monotonic() - started


def _log(store, identifier):
    with open(os.path.join(store, identifier + ".log")) as handle:
        return handle.read()


def _servers_of(admin_conn, build_id):
    """Names of every server the (finished) build made: all are deleted by
    now, and Nova lists deleted servers to admins until they are archived."""
    return sorted(s.name for s in admin_conn.compute.servers(
        all_projects=True, deleted_only=True)
        if s.name.startswith("imgfac-nova-%s-" % build_id))


def _interrupt_at_install(config, store, params, directory, env, *extra,
                          rootpw=None):
    """Start a build (of a template with another root password when given),
    wait until it runs the installer (it missed the cache), interrupt it;
    returns its record."""
    template = builds.write_template(directory)
    if rootpw:
        with open(template) as handle:
            text = handle.read().replace(builds.ROOT_PASSWORD, rootpw)
        with open(template, "w") as handle:
            handle.write(text)
    proc = builds.start(config, "base_image",
                        *builds.with_install_script(params, directory),
                        *extra, template, env=env)
    try:
        builds.wait_for_activity(proc, store, "Booting the Debian installer",
                                 timeout=600)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=600)
    [record] = builds.records(store).values()
    return record


# -- in the test cloud -----------------------------------------------------------

def test_nova_repeat_build_reuses_the_jeos_and_boots_no_installer(
        nova_base_image, cloud_env, setup, conn, admin_conn, cleanup):
    config, store, tmp = setup
    first = nova_base_image.record
    cached = first["properties"]["jeos_image"]
    assert first["properties"]["jeos_cache"] in ("stored", "hit")
    entry = conn.image.get_image(cached)
    assert entry.status == "active" and entry.visibility == "private"
    assert entry.properties["imgfac_role"] == "jeos-cache"
    assert "imgfac_owner" not in entry.properties  # no process owns it

    record, seconds = _build(config, builds.NOVA_PARAMS, tmp, cloud_env,
                             cleanup=cleanup, conn=conn)
    assert record["status"] == "COMPLETE"
    assert record["properties"]["jeos_cache"] == "hit"
    assert record["properties"]["jeos_image"] == cached
    assert set(record["timings"]) == {"media", "customize", "capture"}
    build_id = record["identifier"]
    assert _servers_of(admin_conn, build_id) == [
        "imgfac-nova-%s-guest" % build_id]
    assert "Reusing the cached JEOS %s" % cached in _log(store, build_id)
    assert conn.image.get_image(cached).status == "active"  # still cached
    print("repeat Nova build: %.0f s (first: %.0f s)"
          % (seconds, nova_base_image.seconds))

    listed = builds.imgfac(config, "jeos", env=cloud_env)
    assert listed.returncode == 0, listed.stderr
    assert cached in {row["id"] for row in builds.record(listed)}


def test_nova_changed_os_misses_the_cache(nova_base_image, cloud_env, setup,
                                          tmp_path):
    config, store, tmp = setup
    script = tmp / "changed.ks"
    script.write_text(builds.INSTALL_SCRIPT + "# changed\n")
    record = _interrupt_at_install(config, store, builds.NOVA_PARAMS, tmp,
                                   cloud_env, "--file-parameter",
                                   "install_script", str(script))
    assert record["status"] == "FAILED"
    assert "jeos_cache" not in record["properties"]  # it was installing


@pytest.mark.slow  # a whole install again, and again for the next builds
def test_nova_deleted_cached_jeos_is_installed_again(
        nova_base_image, cloud_env, setup, conn, cleanup):
    config, store, tmp = setup
    cached = nova_base_image.record["properties"]["jeos_image"]
    listed = builds.record(builds.imgfac(config, "jeos", env=cloud_env))
    assert cached in [row["id"] for row in listed if row["plugin"] == "nova"]
    removed = builds.imgfac(config, "jeos", "--remove", cached, env=cloud_env)
    assert removed.returncode == 0, removed.stderr
    assert conn.image.find_image(cached) is None
    record, _ = _build(config, builds.NOVA_PARAMS, tmp, cloud_env,
                       cleanup=cleanup, conn=conn)
    assert record["status"] == "COMPLETE"
    assert record["properties"]["jeos_cache"] == "stored"
    assert "install" in record["timings"]
    assert conn.image.get_image(
        record["properties"]["jeos_image"]).status == "active"


# -- locally ---------------------------------------------------------------------

def test_local_repeat_build_reuses_the_jeos(local_base_image, local_env,
                                            setup, jeos_cache):
    config, store, tmp = setup
    first = local_base_image.record
    cached = first["properties"]["jeos_image"]
    assert os.path.dirname(cached) == jeos_cache
    record, seconds = _build(config, builds.LOCAL_PARAMS, tmp, local_env)
    assert record["properties"]["jeos_cache"] == "hit"
    assert record["properties"]["jeos_image"] == cached
    assert set(record["timings"]) == {"media", "customize", "capture"}
    log = _log(store, record["identifier"])
    assert "Reusing the cached JEOS" in log
    assert "Booting the Debian installer" not in log
    assert builds.store_leftovers(store) == []  # no work directory left
    assert builds.qemu_processes_under(store) == []
    assert os.path.exists(record["data"]) and os.path.exists(cached)
    print("repeat local build: %.0f s (first: %.0f s)"
          % (seconds, local_base_image.seconds))


def test_local_changed_os_misses_the_cache(local_base_image, local_env,
                                           setup):
    config, store, tmp = setup
    record = _interrupt_at_install(config, store, builds.LOCAL_PARAMS, tmp,
                                   local_env, rootpw="another-secret")
    assert record["status"] == "FAILED"
    assert builds.local_left(store, record["identifier"]) == []
