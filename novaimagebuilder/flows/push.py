"""The push flow: a provider's Glance image of a finished image.

In order: send-image (upload, copy or web-download: see
:mod:`novaimagebuilder.tasks.push`), copy-into-stores.
"""
from taskflow.patterns import linear_flow

from novaimagebuilder.tasks import push

#: The flow's name: a build's saved run of it is found by its name (keep
#: it stable, as the task names).
NAME = "push-image"


def get_flow(run):
    """The push flow of ``run`` (a push.PushRun)."""
    return linear_flow.Flow(NAME).add(push.SendImage(run),
                                      push.CopyIntoStores(run))
