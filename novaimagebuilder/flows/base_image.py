"""The base-image flow, and the customize flow a finished image takes to
become another (a target's content).

Base image, in order: fetch-media, find-jeos, prepare-media,
boot-installer, wait-installer, capture-jeos, remove-installer, keep-jeos
(the install steps pass through when the JEOS cache has the JEOS), then
customize, capture-image, remove-guest, discard-jeos (when the JEOS cache
did not take it). Customize: customize, capture-image, describe-image (when
the caller has a description to add), remove-guest.
"""
from taskflow.patterns import linear_flow

from novaimagebuilder.tasks import guest
from novaimagebuilder.tasks import install
from novaimagebuilder.tasks import names

#: The flows' names: a build's saved run of a flow is found by its name
#: (keep them stable, as the task names).
NAME = "base-image"
CUSTOMIZE_NAME = "customize-image"


def get_flow(run):
    """The base-image flow of ``run`` (a BuildRun)."""
    flow = linear_flow.Flow(NAME)
    flow.add(install.FetchMedia(run), install.FindJeos(run),
             install.PrepareMedia(run), install.BootInstaller(run),
             install.WaitInstaller(run), install.CaptureJeos(run),
             install.RemoveInstaller(run),
             install.KeepJeos(run, provides=(names.JEOS_INFO, names.DISK)))
    _customize(flow, run, "the JEOS")
    flow.add(install.DiscardJeos(run))
    return flow


def get_customize_flow(run, finish=None, describe=None):
    """Customize the image the store's ``disk`` names (left as it was):
    boot it, customize, run ``finish``, capture the copy, then
    ``describe(image)`` it (describe-image, when given), remove the
    guest."""
    return _customize(linear_flow.Flow(CUSTOMIZE_NAME), run,
                      "the base image", finish, describe)


def _customize(flow, run, what, finish=None, describe=None):
    flow.add(guest.Customize(run, what, finish), guest.CaptureImage(run))
    if describe is not None:
        flow.add(guest.DescribeImage(run, describe))
    flow.add(guest.RemoveGuest(run))
    return flow
