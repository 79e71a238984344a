"""Image records as rows of the images table, and the queries on it."""
import dataclasses
import json
import operator

import sqlalchemy as sa
from oslo_db.sqlalchemy import types

from imgfac_nova import images
from imgfac_nova.db import models

_TABLE = models.images
#: Record fields ``query`` pushes into SQL (a column each, with its
#: Python type); other query keys are checked on the records read.
_FILTERABLE = {column.name: column.type.python_type
               for column in _TABLE.columns
               if column.name in images.FIELDS
               and isinstance(column.type, (sa.String, sa.Integer))}
_JSON = [column.name for column in _TABLE.columns
         if column.name in images.FIELDS
         and isinstance(column.type, types.JsonEncodedDict)]
_PLAIN = [column for column in _TABLE.columns
          if column.name in images.FIELDS and column.name not in _JSON]


#: Fields every listed record has, whatever fields were asked for (the
#: order, the record's kind and its validity need them).
ALWAYS = ("identifier", "type", "status", "created")
#: Record fields in the order ImageRecord takes them as arguments.
_ORDER = [field.name for field in dataclasses.fields(images.ImageRecord)]


def _json_array(names):
    """The JSON columns ``names`` joined into one JSON array in SQL (they are
    never NULL), so a listed row takes one json.loads, not one a column."""
    first, *rest = [sa.type_coerce(_TABLE.c[name], sa.Text) for name in names]
    text = sa.literal("[") + first
    for part in rest:
        text = text + sa.literal(",") + part
    return (text + sa.literal("]")).label("json_fields")


def values(data):
    """The row's values for ``data`` (a record's dict, perhaps with keys
    that are no record field: those go to ``extra``)."""
    row = {key: value for key, value in data.items() if key in images.FIELDS}
    row["extra"] = {key: value for key, value in data.items()
                    if key not in images.FIELDS}
    return row


def record(row):
    """The ImageRecord of a row."""
    return images.ImageRecord(**{key: getattr(row, key)
                                 for key in images.FIELDS})


def insert(session, data):
    session.execute(sa.insert(_TABLE).values(**values(data)))


def get(session, identifier, lock=False):
    """The row of ``identifier`` (None when there is none); with ``lock``,
    locked until the transaction ends."""
    statement = sa.select(_TABLE).where(_TABLE.c.identifier == identifier)
    if lock:
        statement = statement.with_for_update()
    return session.execute(statement).one_or_none()


def request_cancel(session, identifier):
    """Mark ``identifier``'s build as asked to stop; False when there is no
    such record."""
    done = session.execute(sa.update(_TABLE).where(
        _TABLE.c.identifier == identifier).values(cancel_requested=True))
    return done.rowcount > 0


def cancel_requested(session, identifiers):
    """Which of ``identifiers`` were asked to stop."""
    return {row.identifier for row in session.execute(
        sa.select(_TABLE.c.identifier).where(
            _TABLE.c.identifier.in_(list(identifiers)),
            _TABLE.c.cancel_requested.is_(True)))}


def update(session, record, fields):
    """Save ``record``'s ``fields`` in its row (the others, and ``extra``,
    stay as they are)."""
    if not fields:
        return
    session.execute(sa.update(_TABLE).where(
        _TABLE.c.identifier == record.identifier).values(
            **{name: getattr(record, name) for name in fields}))


def query(session, wanted, fields=None):
    """Records whose fields (or properties) equal ``wanted``'s values,
    oldest first: filtered in SQL where SQL can tell (see
    :data:`_FILTERABLE`), the rest here. With ``fields``, only those
    columns are read (and :data:`ALWAYS`, and what ``wanted`` names): the
    records' other fields are None.

    Listing thousands of records is the CLI's and the API's common case:
    the JSON columns come as one array a row (:func:`_json_array`), decoded
    together, and the rows are sorted here, not by the database (which,
    filtering on an index, would copy every whole row into a temporary
    sort)."""
    if fields is None:
        names = images.FIELDS
    else:
        names = set(fields).union(ALWAYS, wanted)
        if not names <= images.FIELDS:
            names.add("properties")  # a property in ``wanted``
    plain = [column for column in _PLAIN if column.name in names]
    json_names = [name for name in _JSON if name in names]
    statement = sa.select(*plain, _TABLE.c.id, *(
        [_json_array(json_names)] if json_names else []))
    in_sql = 0
    for key, value in wanted.items():
        kind = _FILTERABLE.get(key)
        if value is None and kind is not None:
            statement = statement.where(_TABLE.c[key].is_(None))
        elif kind is not None and type(value) is kind:
            statement = statement.where(_TABLE.c[key] == value)
        else:
            continue
        in_sql += 1
    columns = [column.name for column in plain]
    rows = sorted(session.execute(statement).all(), key=operator.itemgetter(
        columns.index("created"), len(plain)))  # (then ``id``)
    # one JSON document for all the rows: one json.loads, not one a row
    decoded = json.loads("[%s]" % ",".join(row[-1] for row in rows)) \
        if json_names else [()] * len(rows)
    # ImageRecord's arguments in its fields' order, each picked from the
    # row's columns, its decoded JSON values or a None (a field not read):
    # no dict a record, the cheapest way to make thousands
    columns += json_names
    pick = operator.itemgetter(*[
        columns.index(name) if name in columns else len(columns)
        for name in _ORDER])
    unread = (None,)
    found = [images.ImageRecord(*pick(row[:len(plain)] + tuple(json_values)
                                      + unread))
             for row, json_values in zip(rows, decoded)]
    if in_sql < len(wanted):
        return [record for record in found if record.matches(wanted)]
    return found


def delete(session, identifier):
    session.execute(sa.delete(_TABLE).where(
        _TABLE.c.identifier == identifier))


def identifiers(session):
    return set(session.execute(sa.select(_TABLE.c.identifier)).scalars())
