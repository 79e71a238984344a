"""The imgfac-nova command, run as a user runs it: a subprocess."""
import json
import os
import signal
import subprocess
import sys

import pytest

from imgfac_nova import images
from imgfac_nova import store
from tests import poll

GOOD = """<template>
  <name>clitest</name>
  <os>
    <name>TestOS</name><version>1</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>rootsecret</rootpw>
  </os>
</template>
"""


@pytest.fixture
def run(cli_env, config_file, tmp_path):
    def run(*args, timeout=60):
        return subprocess.run(
            [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
             config_file, *args], env=cli_env, cwd=str(tmp_path),
            capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.tdl"
    path.write_text(GOOD)
    return str(path)


def _store_files(tmp_path):
    """The store's files (the database's among them)."""
    store = tmp_path / "store"
    return sorted(p for p in os.listdir(store) if not p.startswith(".")) \
        if store.exists() else []


def _records(tmp_path):
    return store.ImageStore(str(tmp_path / "store")).list()


def test_help_lists_verbs(run):
    result = run("--help")
    assert result.returncode == 0
    for verb in ("base_image", "target_image", "provider_image", "images",
                 "delete", "plugins", "validate"):
        assert verb in result.stdout


def test_base_image_complete_prints_final_details(run, good, tmp_path):
    result = run("base_image", "--parameter", "size", "64", good)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "============ Final Image Details ============"
    uuid = lines[1].split(": ")[1]
    assert lines[2] == "Type: base_image"
    assert lines[3] == "Status: COMPLETE"
    assert lines[5] == "Image filename: %s" % (tmp_path / "store" /
                                               (uuid + ".body"))
    assert lines[-1] == "Image build completed SUCCESSFULLY!"
    assert os.path.getsize(tmp_path / "store" / (uuid + ".body")) == 64
    # Progress went to stderr, as plain lines (not a terminal).
    assert "BaseImage %s 100%% Build complete" % uuid[:8] in result.stderr


def test_base_image_failure_exit_1_one_line(run, good, tmp_path):
    result = run("base_image", "--parameter", "fail_at", "0", good)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        "Image build FAILED with error: step 0 exploded")
    assert "Traceback" not in result.stderr
    uuid = result.stdout.splitlines()[1].split(": ")[1]
    log = tmp_path / "store" / (uuid + ".log")
    assert "Build log: %s" % log in result.stdout
    assert "Traceback" in log.read_text()
    assert "RuntimeError: step 0 exploded" in log.read_text()


def test_json_output(run, good):
    result = run("--output", "json", "base_image", good)
    assert result.returncode == 0
    record = json.loads(result.stdout)
    assert record["status"] == "COMPLETE"
    assert record["type"] == "BaseImage"


@pytest.mark.parametrize("args,message", [
    (("base_image", "--parameter", "steps", "lots", "{good}"),
     "parameter 'steps' of plugin testos: expected an integer, got 'lots'"),
    (("base_image", "--parameter", "os_plugin", "fedora40", "{good}"),
     "OS plugin fedora40 does not build TestOS 1 x86_64"),
    (("base_image", "--parameter", "refuse", "flavor", "{good}"),
     "the cloud says no: flavor"),
    (("base_image", "--parameters", "{missing}", "{good}"),
     "--parameters: cannot read"),
    (("base_image", "{missing}"), "missing.tdl"),
    (("target_image", "--id", "0b1c7c58-5b8b-4e43-9a55-3b3c5d2b8a7e",
      "filecopy"), "no image with id 0b1c7c58"),
    (("target_image", "--template", "{good}", "ec2"),
     "no cloud plugin makes 'ec2' images"),
    (("provider_image", "filecopy", "p", "{missing}", "--template", "{good}"),
     "cannot read credentials file"),
    (("images", "[1"), "the query is not JSON"),
    (("images", "[1]"), "the query must be a JSON object"),
    (("delete", "not-a-uuid"), "an id is a UUID"),
    (("plugins", "--id", "nope"), "no plugin named 'nope'"),
])
def test_bad_input_exit_2_one_line_nothing_created(run, good, tmp_path, args,
                                                   message):
    names = {"good": good, "missing": str(tmp_path / "missing.tdl")}
    result = run(*[a.format(**names) for a in args])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("imgfac-nova: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not [n for n in _store_files(tmp_path)
                if not n.startswith(store.SQLITE_NAME)]
    assert _records(tmp_path) == []


def test_usage_errors_exit_2(run):
    assert run().returncode == 2
    assert run("base_image").returncode == 2
    assert run("target_image", "qcow2").returncode == 2  # needs --id/--template
    assert run("frobnicate").returncode == 2


def test_bad_template_names_file_and_line(run, tmp_path):
    bad = tmp_path / "bad.tdl"
    bad.write_text(GOOD.replace("<arch>x86_64</arch>", "<arch>x86_64</arch>\n"
                                "    <colour>blue</colour>"))
    result = run("base_image", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("imgfac-nova: error: %s:5:" % bad)
    assert len(result.stderr.splitlines()) == 1
    assert _store_files(tmp_path) == []


def test_missing_config_file_is_usage_error(cli_env, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
         str(tmp_path / "nope.conf"), "images"], env=cli_env,
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("imgfac-nova: error:")
    assert len(result.stderr.splitlines()) == 1


def test_validate(run, good, tmp_path):
    result = run("validate", good)
    assert result.returncode == 0
    assert result.stdout.startswith("%s: OK\n" % good)
    assert "TestOS" in result.stdout
    bad = tmp_path / "bad.tdl"
    bad.write_text("<template>")
    result = run("validate", good, str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(str(bad) + ":1:")
    result = run("--output", "json", "validate", good, str(bad))
    assert [r["valid"] for r in json.loads(result.stdout)] == [True, False]


def test_template_limits_come_from_the_configuration(
        run, good, config_file, tmp_path):
    with open(config_file, "a") as conf:
        conf.write("max_template_bytes = 2048\n")
    big = tmp_path / "big.tdl"
    big.write_text(GOOD.replace("</template>", "<description>%s</description>"
                                "</template>" % ("x" * 3000)))
    result = run("validate", good, str(big))
    assert result.returncode == 1
    assert result.stderr == ("%s: template is larger than 2048 bytes (the "
                             "max_template_bytes option)\n" % big)
    result = run("base_image", str(big))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "template is larger than 2048 bytes (the max_template_bytes option)")
    assert _store_files(tmp_path) == []


def test_images_query_and_delete(run, good, tmp_path):
    ok = run("--output", "json", "base_image", good)
    failed = run("--output", "json", "base_image", "--parameter", "fail_at",
                 "0", good)
    ok_id = json.loads(ok.stdout)["identifier"]
    failed_id = json.loads(failed.stdout)["identifier"]
    listed = run("images")
    assert listed.returncode == 0
    assert ok_id in listed.stdout and failed_id in listed.stdout
    found = json.loads(run("--output", "json", "images",
                           '{"status": "FAILED"}').stdout)
    assert [r["identifier"] for r in found] == [failed_id]
    result = run("delete", ok_id)
    assert result.returncode == 0
    assert result.stdout == "Deleted BaseImage %s\n" % ok_id
    assert ok_id not in run("images").stdout
    assert run("delete", ok_id).returncode == 2


#: What builds, plugins and templates need, and listing records does not.
_NOT_FOR_LISTING = ("taskflow", "openstack", "keystoneauth1", "glanceclient",
                    "paramiko", "lxml", "alembic", "imgfac_nova.build",
                    "imgfac_nova.plugins", "imgfac_nova.template",
                    "imgfac_nova.template_model", "imgfac_nova.template_xml",
                    "imgfac_nova.template_structure",
                    "novaimagebuilder.machines", "sqlalchemy.orm",
                    "oslo_db.sqlalchemy.enginefacade", "imgfac_nova.db.api")
#: Runs imgfac-nova's main with the arguments given, then prints on its
#: last line of stderr whether the cycle collector is on and every module
#: loaded.
_PROBE = ("import gc, sys\n"
          "from imgfac_nova import cli\n"
          "code = cli.main(sys.argv[1:])\n"
          "print(gc.isenabled(), *sorted(sys.modules), file=sys.stderr)\n"
          "sys.exit(code)\n")


def test_images_loads_only_what_listing_needs(cli_env, config_file,
                                              tmp_path, good):
    def probe(*args):
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, "--config-file", config_file,
             *args], env=cli_env, cwd=str(tmp_path), capture_output=True,
            text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        collecting, *modules = result.stderr.splitlines()[-1].split()
        return result.stdout, collecting, set(modules)

    # (a store of the current schema: creating one loads alembic)
    record = store.ImageStore(str(tmp_path / "store")).add(
        images.ImageRecord(type=images.BASE_IMAGE))
    listed, collecting, modules = probe("images")
    assert record.identifier in listed
    assert collecting == "True"  # (off while listing only)
    assert "imgfac_nova.db.records" in modules
    assert not {name for name in modules if any(
        name == heavy or name.startswith(heavy + ".")
        for heavy in _NOT_FOR_LISTING)}
    # the probe sees what a command loads
    assert {"lxml", "imgfac_nova.template"} <= probe("validate", good)[2]


def test_target_and_provider_images(run, good, tmp_path):
    base = json.loads(run("--output", "json", "base_image", good).stdout)
    target = run("target_image", "--id", base["identifier"], "filecopy")
    assert target.returncode == 0, target.stderr
    assert "Type: target_image" in target.stdout
    target_id = target.stdout.splitlines()[1].split(": ")[1]
    creds = tmp_path / "creds"
    creds.write_text("let-me-in")
    provider = tmp_path / "provider"
    provider.mkdir()
    pushed = run("provider_image", "filecopy", str(provider), str(creds),
                 "--id", target_id)
    assert pushed.returncode == 0, pushed.stderr
    assert "Image ID on provider: %s" % provider in pushed.stdout
    assert len(os.listdir(provider)) == 1


def test_plugins_listing(run):
    result = run("plugins")
    assert result.returncode == 0
    assert "testos" in result.stdout and "filecloud" in result.stdout
    assert "notaplugin: BROKEN" in result.stderr
    detail = json.loads(run("--output", "json", "plugins", "--id",
                            "testos").stdout)
    assert detail["name"] == "testos"
    assert detail["targets"] == [["TestOS", None, None]]
    assert {"name": "token", "type": "string", "default": None,
            "secret": True, "help": "a secret"} in detail["parameters"]


def test_secret_on_command_line_warns_and_is_not_stored(run, good, tmp_path):
    result = run("base_image", "--parameter", "token", "tok-9", good)
    assert result.returncode == 0
    assert "secret parameter 'token'" in result.stderr
    for name in _store_files(tmp_path):
        assert b"tok-9" not in (tmp_path / "store" / name).read_bytes()
        assert b"rootsecret" not in (tmp_path / "store" / name).read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cancels_build_and_marks_failed(cli_env, config_file, good,
                                               tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config_file,
         "base_image", "--parameter", "steps", "100", "--parameter",
         "step_seconds", "1", good], env=cli_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    poll.wait_for(lambda: [r for r in _records(tmp_path)
                           if r.activity.startswith("Step ")], 60,
                  "the build's first step", interval=0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "interrupted; stopping the build" in err
    assert out.splitlines()[-1].startswith(
        "Image build FAILED with error: interrupted at ")
    assert "%: Step " in out.splitlines()[-1]


def test_jeos_lists_and_removes_local_cache_entries(cli_env, tmp_path):
    from novaimagebuilder.machines import local
    cache_dir = tmp_path / "jeos"
    config = tmp_path / "jeos.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\njeos_cache_path = %s\n"
                      % (tmp_path / "store", cache_dir))
    disk = tmp_path / "captured.qcow2"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 1020)
    entry = local.JeosCache(str(cache_dir)).add(str(disk), "ab" * 32,
                                                "Debian 12 x86_64", "b-1")
    env = {k: v for k, v in cli_env.items() if not k.startswith("OS_")}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
             str(config), *args], env=env, capture_output=True, text=True,
            timeout=60)
    listed = run("--output", "json", "jeos")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["plugin"], row["id"], row["name"], row["build"]) == (
        "local", entry.id, "Debian 12 x86_64", "b-1")
    text = run("jeos").stdout
    assert "Debian 12 x86_64" in text and entry.id in text

    unknown = run("jeos", "--remove", "nope")
    assert unknown.returncode == 2
    # (the test plugin site's broken plugin warns first)
    assert unknown.stderr.strip().splitlines()[-1] == \
        "imgfac-nova: error: no JEOS cache entry nope"
    assert os.path.exists(entry.id)

    swept = run("sweep", "--dry-run", "--jeos")
    assert swept.returncode == 0
    assert "Would remove (local): JEOS cache entry" in swept.stdout
    assert os.path.exists(entry.id)
    removed = run("jeos", "--remove", entry.key)
    assert removed.returncode == 0, removed.stderr
    assert not os.path.exists(entry.id)
    assert run("jeos").stdout.strip() == "The JEOS cache is empty"


def test_delete_stops_a_build_another_process_runs(cli_env, config_file, good,
                                                   tmp_path):
    """The cancel goes through the database: the building process stops
    and unwinds, then the image is deleted."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config_file,
         "base_image", "--parameter", "steps", "100", "--parameter",
         "step_seconds", "1", good], env=cli_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    (record,) = poll.wait_for(lambda: [r for r in _records(tmp_path)
                                       if r.activity.startswith("Step ")],
                              60, "the build's first step", interval=0.1)
    deleted = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config_file,
         "delete", record.identifier], env=cli_env, capture_output=True,
        text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == "Deleted BaseImage %s\n" % record.identifier
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "asked to stop" in err
    assert out.splitlines()[-1].startswith(
        "Image build FAILED with error: interrupted at ")
    assert _records(tmp_path) == []


def test_a_reader_that_goes_away_is_no_error(cli_env, config_file, tmp_path):
    """``imgfac-nova images | head -1``: the list outgrows the pipe, the
    reader closes it; no traceback, no 'Broken pipe' line."""
    images_store = store.ImageStore(str(tmp_path / "store"))
    for _ in range(1500):
        images_store.add(images.ImageRecord(type=images.BASE_IMAGE,
                                            status=images.COMPLETE))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
         config_file, "images"], env=cli_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    errors = proc.stderr.read().decode()
    assert proc.wait(60) != 0
    assert errors == "", errors


def test_the_database_leaves_no_journal_beside_it(run, good, tmp_path):
    """A command closes its database as it ends: SQLite's -wal and -shm
    files are gone with it."""
    assert run("base_image", good).returncode == 0
    assert run("images").returncode == 0
    assert not [name for name in os.listdir(tmp_path / "store")
                if name.endswith(("-wal", "-shm"))]
