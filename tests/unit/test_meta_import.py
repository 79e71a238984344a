"""A file store of the releases before the database (``<uuid>.meta``
records) is imported once, whole."""
import contextlib
import json
import logging
import os
import sqlite3

from imgfac_nova import images
from imgfac_nova import store
from imgfac_nova.db import meta_files

BASE_ID = "4d7e5a36-3c2b-4d1e-9f5a-0b8c7d6e5f40"
TARGET_ID = "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

#: Records as the file store wrote them: json.dump(record.to_dict(),
#: indent=2, sort_keys=True) to <uuid>.meta; the target's has a key no
#: release of the record knows.
OLD_RECORDS = {
    BASE_ID: {
        "base_image_id": None, "created": "2026-03-01T10:00:00+00:00",
        "data": None, "icicle": "<icicle><extra>pkg</extra></icicle>",
        "identifier": BASE_ID, "identifier_on_provider": None,
        "log": "/srv/store/%s.log" % BASE_ID, "parameters": {
            "admin_password": "***", "flavor": "2"},
        "percent_complete": 100, "plugin": "nova", "project_id": None,
        "properties": {images.GLANCE_ID_PROPERTY: "glance-1", "os": "Fedora"},
        "provider": None, "provider_account_identifier": None,
        "status": "COMPLETE", "status_detail": {
            "activity": "Build complete", "error": None},
        "target": None, "target_image_id": None,
        "template": "<template><name>f40</name></template>",
        "timings": {"install": {"cloud": 612.0, "orchestrator": 3.5}},
        "type": "BaseImage", "updated": "2026-03-01T10:30:00+00:00",
        "worker": "builder:4242"},
    TARGET_ID: {
        "base_image_id": BASE_ID, "created": "2026-03-01T11:00:00+00:00",
        "data": "/srv/store/%s.body" % TARGET_ID, "icicle": None,
        "identifier": TARGET_ID, "identifier_on_provider": None,
        "log": "/srv/store/%s.log" % TARGET_ID, "parameters": {},
        "percent_complete": 40, "plugin": "formats", "project_id": "proj",
        "properties": {}, "provider": None,
        "provider_account_identifier": None, "status": "FAILED",
        "status_detail": {"activity": "Converting",
                          "error": "qemu-img failed"},
        "target": "qcow2", "target_image_id": None, "template": None,
        "timings": {}, "type": "TargetImage",
        "updated": "2026-03-01T11:05:00+00:00", "worker": "builder:4243",
        "colour": {"future": ["field"]}},
}


def _old_store(path):
    os.makedirs(path, exist_ok=True)
    for identifier, record in OLD_RECORDS.items():
        with open(os.path.join(path, identifier + ".meta"), "w") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
    for name in (BASE_ID + ".log", TARGET_ID + ".log", TARGET_ID + ".body",
                 ".lock", ".tmp-k2j3h4g5.meta"):
        with open(os.path.join(path, name), "w") as handle:
            handle.write(name)


def _rows(path):
    with contextlib.closing(sqlite3.connect(
            os.path.join(path, store.SQLITE_NAME))) as db:
        return {identifier: json.loads(extra) for identifier, extra in
                db.execute("SELECT identifier, extra FROM images")}


def _logged(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == meta_files.LOG.name]


def test_meta_files_are_imported_once_without_losing_a_field(tmp_path,
                                                             caplog):
    path = str(tmp_path / "store")
    _old_store(path)
    caplog.set_level(logging.INFO, "imgfac_nova.db.meta_files")
    records = store.ImageStore(path).list()
    assert [r.identifier for r in records] == [BASE_ID, TARGET_ID]
    for record in records:
        old = OLD_RECORDS[record.identifier]
        # every field it had; a field newer than the file: its default
        assert record.to_dict() == images.ImageRecord.from_dict(
            old).to_dict()
    assert _rows(path) == {BASE_ID: {},
                           TARGET_ID: {"colour": {"future": ["field"]}}}
    [line] = _logged(caplog)
    assert line.startswith("Imported 2 image record(s) from the .meta files "
                           "in %s into the database sqlite:///" % path)
    # moved aside whole; data, logs and the rest stay
    imported = os.path.join(path, meta_files.IMPORTED)
    for identifier, record in OLD_RECORDS.items():
        with open(os.path.join(imported, identifier + ".meta")) as handle:
            assert json.load(handle) == record
    assert sorted(n for n in os.listdir(path) if not n.startswith(
        store.SQLITE_NAME)) == sorted([
            ".lock", ".tmp-k2j3h4g5.meta", BASE_ID + ".log",
            TARGET_ID + ".body", TARGET_ID + ".log", meta_files.IMPORTED,
            meta_files.DONE])
    # a second start imports nothing and says nothing
    caplog.clear()
    again = store.ImageStore(path)
    again.update(BASE_ID, status=images.DELETING)
    assert [r.status for r in again.list()] == ["DELETING", "FAILED"]
    assert _logged(caplog) == []
    assert _rows(path)[TARGET_ID] == {"colour": {"future": ["field"]}}


def test_a_record_already_imported_is_not_imported_twice(tmp_path):
    # (the import stopped between a record's insert and its file's move)
    path = str(tmp_path / "store")
    _old_store(path)
    store.ImageStore(path).open()
    os.replace(os.path.join(path, meta_files.IMPORTED, BASE_ID + ".meta"),
               os.path.join(path, BASE_ID + ".meta"))
    os.unlink(os.path.join(path, meta_files.DONE))
    s = store.ImageStore(path)
    s.update(BASE_ID, percent_complete=99)
    assert [r.percent_complete for r in s.list()] == [99, 40]
    assert meta_files.pending(path) == []


def test_a_file_that_is_no_record_stays_with_a_warning(tmp_path, caplog):
    path = str(tmp_path / "store")
    _old_store(path)
    bad = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f.meta"
    wrong_id = "1c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f.meta"
    (tmp_path / "store" / bad).write_text("{not json")
    (tmp_path / "store" / wrong_id).write_text(json.dumps(
        OLD_RECORDS[BASE_ID]))
    assert len(store.ImageStore(path).list()) == 2
    warnings = _logged(caplog)
    assert any(bad in w and "Not importing" in w for w in warnings)
    assert any(wrong_id in w and "no record of that id" in w
               for w in warnings)
    assert meta_files.pending(path) == [bad, wrong_id]


def test_once_imported_the_directory_is_not_listed_again_but_by_db_sync(
        tmp_path, monkeypatch):
    path = str(tmp_path / "store")
    store.ImageStore(path).open()  # nothing to import: done
    assert os.path.exists(os.path.join(path, meta_files.DONE))
    _old_store(path)  # (files copied in later)
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listed.append(p) or
                        real_listdir(p))
    assert store.ImageStore(path).list() == [] and listed == []
    store.ImageStore(path).sync()
    assert [r.identifier for r in store.ImageStore(path).list()] == [
        BASE_ID, TARGET_ID]


def test_a_file_left_unimported_is_looked_at_again(tmp_path):
    path = str(tmp_path / "store")
    _old_store(path)
    bad = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f.meta"
    (tmp_path / "store" / bad).write_text("{not json")
    store.ImageStore(path).open()
    assert not os.path.exists(os.path.join(path, meta_files.DONE))
    (tmp_path / "store" / bad).write_text(json.dumps(dict(
        OLD_RECORDS[BASE_ID], identifier=bad[:-len(".meta")])))
    assert len(store.ImageStore(path).list()) == 3
    assert os.path.exists(os.path.join(path, meta_files.DONE))
