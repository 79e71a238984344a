"""The image records Image Factory users know: BaseImage, TargetImage, ProviderImage.

A record is plain data. It is saved by the store as ``<uuid>.meta`` (JSON) next to
``<uuid>.body`` when the image has local data.
"""
import dataclasses
import datetime
import uuid

NEW = "NEW"
PENDING = "PENDING"
BUILDING = "BUILDING"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
DELETING = "DELETING"
DELETED = "DELETED"
DELETEFAILED = "DELETEFAILED"
STATUSES = (NEW, PENDING, BUILDING, COMPLETE, FAILED, DELETING, DELETED,
            DELETEFAILED)
ACTIVE_STATUSES = (PENDING, BUILDING)

BASE_IMAGE = "BaseImage"
TARGET_IMAGE = "TargetImage"
PROVIDER_IMAGE = "ProviderImage"
TYPES = (BASE_IMAGE, TARGET_IMAGE, PROVIDER_IMAGE)

# The property name Image Factory used for the Glance id of an image.
GLANCE_ID_PROPERTY = "x-image-properties-glance_id"


def utcnow():
    """An ISO 8601 UTC timestamp, to the second."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=0).isoformat()


@dataclasses.dataclass
class ImageRecord:
    """One image and everything known about how it was made."""

    type: str
    identifier: str = dataclasses.field(
        default_factory=lambda: str(uuid.uuid4()))
    status: str = NEW
    percent_complete: int = 0
    status_detail: dict = dataclasses.field(
        default_factory=lambda: {"activity": "Created", "error": None})
    created: str = dataclasses.field(default_factory=utcnow)
    updated: str = dataclasses.field(default_factory=utcnow)
    #: "host:pid" of the process running the build.
    worker: str | None = None
    #: Keystone project that asked for the image (the API daemon), else None.
    project_id: str | None = None
    #: Id of the Keystone trust (caller -> the daemon's service user) the
    #: daemon's build acts through, so it outlives the caller's token.
    trust_id: str | None = None
    #: Name of the plugin that made (and can delete) this image.
    plugin: str | None = None
    #: The template, with secrets redacted.
    template: str | None = None
    #: Build parameters, with secret values redacted.
    parameters: dict = dataclasses.field(default_factory=dict)
    icicle: str | None = None
    base_image_id: str | None = None
    target_image_id: str | None = None
    target: str | None = None
    provider: str | None = None
    identifier_on_provider: str | None = None
    #: The provider account (user/project) that holds the provider image.
    provider_account_identifier: str | None = None
    #: Path of the local image data, when there is any.
    data: str | None = None
    #: Path of the build log.
    log: str | None = None
    properties: dict = dataclasses.field(default_factory=dict)
    #: Seconds per build step, e.g. {"install": {"cloud": 120.0, "orchestrator": 2.1}}.
    timings: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError("unknown image type %r" % self.type)
        if self.status not in STATUSES:
            raise ValueError("unknown image status %r" % self.status)

    @property
    def activity(self):
        return self.status_detail.get("activity")

    @property
    def error(self):
        return self.status_detail.get("error")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: v for k, v in data.items() if k in FIELDS})

    def matches(self, query):
        """True when every key of ``query`` equals this record's value for it."""
        return all((getattr(self, key) if key in FIELDS else
                    self.properties.get(key)) == value
                   for key, value in query.items())


FIELDS = frozenset(f.name for f in dataclasses.fields(ImageRecord))
