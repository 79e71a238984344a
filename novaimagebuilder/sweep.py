"""Removing what crashed builds left behind, in one pass.

A backend lists the resources builds tagged as :class:`Leftover` objects and
says how to remove each kind; :func:`remove` removes those the caller does not
protect, kind by kind in dependency order (what holds a resource before the
resource), waits for each asynchronous removal to finish before the next kind,
and carries on past a resource that refuses, so everything that can go goes.
"""
import dataclasses
import logging
import os
import socket

LOG = logging.getLogger(__name__)

#: ``Leftover.role`` of a finished build's result and of a JEOS cache entry.
RESULT = "result"
JEOS_CACHE = "jeos-cache"


def this_process():
    """This process as the owner of what it makes (a record's worker, a
    claim, the owner tag of a resource): ``host:pid``."""
    return "%s:%d" % (socket.gethostname(), os.getpid())


@dataclasses.dataclass(frozen=True)
class Leftover:
    """One resource a build made: ``kind`` ("server", "work directory", ...),
    the backend's ``id`` and a human ``name``; ``build`` is None for what
    builds share (the media cache's partial downloads)."""

    build: str | None
    kind: str
    id: str
    name: str
    #: RESULT, JEOS_CACHE or None (temporary).
    role: str | None = None
    #: "host:pid" of the process that made it, when known.
    owner: str | None = None
    #: When the build's newest resource was made (ISO 8601), when known.
    created: str | None = None

    def __str__(self):
        named = self.name if self.name == self.id else "%s (%s)" % (
            self.name, self.id)
        if self.build is None:
            return "%s %s" % (self.kind, named)
        return "%s %s of build %s" % (self.kind, named, self.build)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of a leftover: ``error`` is None when it is gone (or, in a
    dry run, would be removed), else one line saying why it is still there."""

    leftover: Leftover
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Kind:
    """How to remove one kind of leftover: ``start(leftover)`` asks for the
    removal; ``wait(leftover)``, when given, returns once it is gone (through
    the waiter). Both raise with a one-line message when it cannot be done."""

    name: str
    start: object
    wait: object = None


def with_owners(found):
    """``found`` with each build's owner, known from any of its leftovers,
    given to those that do not carry it, and the time its newest resource
    was made given to all."""
    owners = {leftover.build: leftover.owner for leftover in found
              if leftover.owner}
    newest = {}
    for leftover in found:
        if leftover.created:
            newest[leftover.build] = max(newest.get(leftover.build, ""),
                                         leftover.created)
    return [dataclasses.replace(
        leftover, owner=leftover.owner or owners.get(leftover.build),
        created=newest.get(leftover.build)) for leftover in found]


def remove(found, kinds, protected, dry_run=False, explain=str, log=None):
    """Remove the ``found`` leftovers that ``protected(leftover)`` (a reason or
    None) does not keep, in the order of ``kinds``; returns the Outcomes in
    that order. A kind's removals are all started, then all waited for, before
    the next kind is touched."""
    log = log or LOG
    order = [kind.name for kind in kinds]
    chosen = []
    for leftover in found:
        reason = protected(leftover)
        if reason:
            log.debug("Keeping %s: %s", leftover, reason)
        else:
            chosen.append(leftover)
    chosen.sort(key=lambda leftover: order.index(leftover.kind))
    outcomes = []
    for kind in kinds:
        group = [leftover for leftover in chosen if leftover.kind == kind.name]
        if dry_run:
            outcomes += [Outcome(leftover) for leftover in group]
            continue
        errors = {}
        for leftover in group:
            errors[leftover] = _attempt(kind.start, leftover, explain)
        for leftover in group:
            if errors[leftover] is None and kind.wait is not None:
                errors[leftover] = _attempt(kind.wait, leftover, explain)
            if errors[leftover]:
                log.warning("Could not remove %s: %s", leftover,
                            errors[leftover])
            else:
                log.info("Removed %s", leftover)
            outcomes.append(Outcome(leftover, errors[leftover]))
    return outcomes


def _attempt(action, leftover, explain):
    try:
        action(leftover)
        return None
    except Exception as exc:
        return explain(exc)
