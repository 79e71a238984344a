import contextlib
import json
import multiprocessing
import os
import sqlite3
import threading
import uuid

import pytest

from imgfac_nova import images
from imgfac_nova import store


def _record(**fields):
    return images.ImageRecord(type=images.BASE_IMAGE, **fields)


def test_add_get_update_list_remove(tmp_path):
    s = store.ImageStore(str(tmp_path / "store"))
    first = s.add(_record())
    second = s.add(_record(status=images.COMPLETE))
    assert s.get(first.identifier).status == images.NEW
    s.update(first.identifier, status=images.BUILDING, percent_complete=40)
    got = s.get(first.identifier)
    assert (got.status, got.percent_complete) == (images.BUILDING, 40)
    assert {r.identifier for r in s.list()} == {first.identifier,
                                                second.identifier}
    assert [r.identifier for r in s.list({"status": images.COMPLETE})] == [
        second.identifier]
    with open(s.body_path(first.identifier), "wb") as handle:
        handle.write(b"data")
    s.remove(first.identifier)
    assert not os.path.exists(s.body_path(first.identifier))
    with pytest.raises(store.NotFound):
        s.get(first.identifier)


def _every_field(**fields):
    """A record with a value of its own in every field."""
    values = dict(
        identifier=str(uuid.uuid4()), status=images.COMPLETE,
        percent_complete=100,
        status_detail={"activity": "Build complete", "error": None},
        created="2026-01-02T03:04:05+00:00", worker="host:42",
        project_id="p" * 32, trust_id="t" * 32, plugin="nova", template="<template/>",
        parameters={"flavor": "2", "admin_password": "***"},
        icicle="<icicle/>", base_image_id=str(uuid.uuid4()),
        target_image_id=str(uuid.uuid4()), target="openstack",
        provider="cloud", identifier_on_provider="glance-id",
        provider_account_identifier="account", data="/x.body",
        log="/x.log", properties={"k": [1, {"n": None}]},
        timings={"install": {"cloud": 120.5, "orchestrator": 2.0}})
    values.update(fields)
    return images.ImageRecord(type=images.PROVIDER_IMAGE, **values)


def test_every_field_round_trips(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_every_field())
    assert set(images.FIELDS) - {"updated"} <= {
        k for k, v in record.to_dict().items()
        if v != getattr(images.ImageRecord(type=images.BASE_IMAGE), k)}
    assert s.get(record.identifier).to_dict() == record.to_dict()
    assert [r.to_dict() for r in s.list()] == [record.to_dict()]


def test_records_are_in_the_sqlite_file_of_the_store(tmp_path):
    s = store.ImageStore(str(tmp_path / "store"))
    record = s.add(_record(properties={"a": 1}))
    path = tmp_path / "store" / store.SQLITE_NAME
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        rows = db.execute("SELECT identifier, properties FROM images")
        assert [(i, json.loads(p)) for i, p in rows] == [
            (record.identifier, {"a": 1})]
    assert s.connection == "sqlite:///" + str(path)
    assert os.stat(tmp_path / "store").st_mode & 0o777 == 0o700


def test_list_filters_in_sql_and_on_the_rest_oldest_first(tmp_path):
    s = store.ImageStore(str(tmp_path))
    base = s.add(_record(status=images.COMPLETE,
                         created="2026-01-01T00:00:02+00:00",
                         properties={"colour": "red"}))
    older = s.add(_record(status=images.COMPLETE,
                          created="2026-01-01T00:00:01+00:00"))
    target = s.add(images.ImageRecord(
        type=images.TARGET_IMAGE, base_image_id=base.identifier,
        project_id="p1", created="2026-01-01T00:00:00+00:00"))
    assert [r.identifier for r in s.list()] == [
        target.identifier, older.identifier, base.identifier]
    assert [r.identifier for r in s.list({"status": images.COMPLETE})] == [
        older.identifier, base.identifier]
    assert [r.identifier for r in s.list({
        "type": images.TARGET_IMAGE, "base_image_id": base.identifier,
        "project_id": "p1"})] == [target.identifier]
    assert [r.identifier for r in s.list({"project_id": None})] == [
        older.identifier, base.identifier]
    assert [r.identifier for r in s.list({"colour": "red"})] == [
        base.identifier]
    assert [r.identifier for r in s.list({
        "status_detail": {"activity": "Created", "error": None},
        "percent_complete": 0})] == [target.identifier, older.identifier,
                                     base.identifier]
    # values of another type than the field's match nothing (not an error)
    assert s.list({"type": 5}) == [] and s.list({"percent_complete": "0"}) == []


def test_list_reads_only_the_fields_asked_for(tmp_path):
    s = store.ImageStore(str(tmp_path))
    full = s.add(_record(status=images.COMPLETE, percent_complete=100,
                         template="<template/>", project_id="p1",
                         properties={"colour": "red"}, timings={"a": 1}))
    s.add(_record(properties={"colour": "blue"}))
    [listed] = s.list({"colour": "red"}, ("percent_complete",))
    assert (listed.identifier, listed.type, listed.status, listed.created,
            listed.percent_complete, listed.properties) == (
        full.identifier, full.type, full.status, full.created, 100,
        {"colour": "red"})
    assert (listed.template, listed.project_id, listed.timings,
            listed.status_detail, listed.updated) == (None,) * 5
    [listed] = s.list({"project_id": "p1"}, ("status_detail",))
    assert (listed.project_id, listed.activity, listed.properties) == (
        "p1", "Created", None)
    assert [r.to_dict() for r in s.list({"project_id": "p1"})] == [
        s.get(full.identifier).to_dict()]


def test_a_listing_process_reads_as_the_store_does(tmp_path, monkeypatch):
    path = str(tmp_path / "store")
    # a store nobody opened yet: made and opened the usual way
    assert store.ImageStore(path).list_once() == []
    assert os.path.exists(os.path.join(path, store.SQLITE_NAME))
    s = store.ImageStore(path)
    red = s.add(_record(status=images.COMPLETE, properties={"colour": "red"}))
    s.add(_record(properties={"colour": "blue"}))
    # an opened store of the current schema: one read on a connection of
    # its own, which gives what list gives
    from imgfac_nova.db import api
    monkeypatch.setattr(api, "database", None)
    fresh = store.ImageStore(path)
    assert [r.to_dict() for r in fresh.list_once()] == [
        r.to_dict() for r in s.list()]
    [listed] = fresh.list_once({"colour": "red"}, ("percent_complete",))
    assert (listed.identifier, listed.template) == (red.identifier, None)
    with contextlib.closing(sqlite3.connect(
            os.path.join(path, store.SQLITE_NAME))) as db, db:
        db.execute("UPDATE images SET status = 'SHINY'")
    with pytest.raises(store.StoreError, match="corrupt image record"):
        fresh.list_once()


def test_a_listing_process_upgrades_an_old_schema_first(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db, db:
        db.execute("UPDATE imgfac_nova_alembic_version SET version_num = "
                   "'0002'")
        db.execute("DROP TABLE build_logs")
    fresh = store.ImageStore(str(tmp_path))
    assert [r.identifier for r in fresh.list_once()] == [record.identifier]
    assert fresh.schema_version() == "0003"


def test_a_listing_process_names_a_database_it_cannot_reach(tmp_path):
    s = store.ImageStore(str(tmp_path))
    s.open()
    unreachable = store.ImageStore(str(tmp_path), {
        "connection": "mysql+pymysql://imgfac:s3cret@127.0.0.1:1/images"})
    with pytest.raises(store.StoreError) as exc:
        unreachable.list_once()
    assert str(exc.value).startswith(
        "cannot connect to the database mysql+pymysql://imgfac:***@"
        "127.0.0.1:1/images: ")
    assert "s3cret" not in str(exc.value) and "\n" not in str(exc.value)


def test_records_of_one_second_list_in_the_order_they_were_added(tmp_path):
    s = store.ImageStore(str(tmp_path))
    added = [s.add(_record(created="2026-01-01T00:00:00+00:00")).identifier
             for _ in range(8)]
    assert [r.identifier for r in s.list()] == added


def test_threads_modifying_one_record_lose_nothing(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())

    def bump(key):
        def increment(r):
            r.properties[key] = r.properties.get(key, 0) + 1
        for _ in range(25):
            s.modify(record.identifier, increment)
    threads = [threading.Thread(target=bump, args=(k,)) for k in "aab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert s.get(record.identifier).properties == {"a": 50, "b": 25}


def test_modify_that_raises_changes_nothing(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())

    def half(r):
        r.status = images.FAILED
        raise RuntimeError("no")
    with pytest.raises(RuntimeError):
        s.modify(record.identifier, half)
    assert s.get(record.identifier).status == images.NEW


def test_a_change_writes_only_the_fields_it_changed(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record(template="<template/>", properties={"a": 1}))
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db, db:
        db.execute("CREATE TABLE written (name TEXT)")
        for column in ("template", "properties", "percent_complete"):
            db.execute("CREATE TRIGGER written_{0} AFTER UPDATE OF {0} ON "
                       "images BEGIN INSERT INTO written VALUES ('{0}'); "
                       "END".format(column))
    s.update(record.identifier, percent_complete=50)
    s.modify(record.identifier, lambda r: r.properties.update(b=2))
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db:
        assert [name for name, in db.execute("SELECT name FROM written")] \
            == ["percent_complete", "properties"]
    assert s.get(record.identifier).properties == {"a": 1, "b": 2}


def test_missing_records(tmp_path):
    s = store.ImageStore(str(tmp_path))
    missing = str(uuid.uuid4())
    for call in (s.get, lambda i: s.update(i, status=images.FAILED)):
        with pytest.raises(store.NotFound, match="no image with id " + missing):
            call(missing)
    s.remove(missing)  # nothing to remove is no error


def test_add_refuses_existing_id(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())
    with pytest.raises(store.StoreError, match="already exists"):
        s.add(images.ImageRecord.from_dict(record.to_dict()))


@pytest.mark.parametrize("bad", ["../etc/passwd", "nope", "", None])
def test_ids_must_be_uuids(tmp_path, bad):
    with pytest.raises(store.NotFound, match="UUID"):
        store.ImageStore(str(tmp_path)).get(bad)


def test_corrupt_record_is_one_line_error(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db, db:
        db.execute("UPDATE images SET status = 'SHINY'")
    for call in (lambda: s.get(record.identifier), s.list):
        with pytest.raises(store.StoreError,
                           match="corrupt image record") as exc:
            call()
        assert "\n" not in str(exc.value)


def test_update_unknown_field(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record())
    with pytest.raises(AttributeError):
        s.update(record.identifier, colour="blue")


def _bump(path, identifier, key, count):
    s = store.ImageStore(path)

    def increment(record):
        record.properties[key] = record.properties.get(key, 0) + 1
    for _ in range(count):
        s.modify(identifier, increment)


def _reader(path, identifier, count, errors):
    s = store.ImageStore(path)
    for _ in range(count):
        try:
            s.get(identifier)
            s.list()
        except Exception as exc:  # any torn read is a failure
            errors.put(repr(exc))


def test_two_processes_do_not_corrupt_or_lose_updates(tmp_path):
    path = str(tmp_path)
    s = store.ImageStore(path)
    record = s.add(_record())
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    workers = [ctx.Process(target=_bump, args=(path, record.identifier, key, 40))
               for key in ("a", "a", "b")]
    workers.append(ctx.Process(target=_reader,
                               args=(path, record.identifier, 200, errors)))
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert errors.empty()
    assert s.get(record.identifier).properties == {"a": 80, "b": 40}


def _add_many(path, count):
    s = store.ImageStore(path)
    for _ in range(count):
        s.add(_record())


def test_concurrent_creates_all_land(tmp_path):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_many, args=(str(tmp_path), 25))
               for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(store.ImageStore(str(tmp_path)).list()) == 100


def test_default_path_per_user(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store.default_path() == str(tmp_path / "imgfac-nova" / "storage")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert store.default_path() == "/var/lib/imgfac-nova/storage"
