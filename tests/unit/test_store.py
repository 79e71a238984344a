import json
import multiprocessing
import os

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


def test_meta_file_is_json_named_by_uuid(tmp_path):
    s = store.ImageStore(str(tmp_path))
    record = s.add(_record(properties={"a": 1}))
    with open(tmp_path / (record.identifier + ".meta")) as handle:
        data = json.load(handle)
    assert data["identifier"] == record.identifier
    assert data["properties"] == {"a": 1}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


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
    (tmp_path / (record.identifier + ".meta")).write_text("{not json")
    with pytest.raises(store.StoreError, match="corrupt image record") as exc:
        s.get(record.identifier)
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
