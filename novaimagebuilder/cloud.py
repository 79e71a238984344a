"""What every part that talks to the cloud shares: the tags builds put on
what they make, and one-line errors for the cloud's exceptions."""
from novaimagebuilder import errors

#: Metadata, property or tag naming the build a resource belongs to.
BUILD_TAG = "imgfac_build_id"
#: "host:pid" of the process that made a temporary resource, so a sweep from
#: any image store leaves a live build's resources alone.
OWNER_TAG = "imgfac_owner"
#: Image property saying what an image is to the build: media (install media,
#: shared once active), installer-disk, jeos (temporary), image (the result)
#: or jeos-cache.
ROLE = "imgfac_role"
MEDIA_SHA256 = "imgfac_media_sha256"
NAME_PREFIX = "imgfac-nova-"
#: How a refusal of the credentials reads.
REFUSED = "the cloud refused the credentials (HTTP 401)"


def explain(exc):
    """One line for an openstacksdk/keystoneauth exception."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk
    cause = exc
    while cause is not None:  # openstacksdk wraps keystoneauth's errors
        if isinstance(cause, ksa.Unauthorized) or \
                getattr(cause, "status_code", None) == 401:
            return REFUSED
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, sdk.HttpException):
        detail = (exc.details or exc.message or "").strip().splitlines()
        status = exc.status_code
        text = detail[0] if detail else str(status)
        if status == 401:
            return REFUSED
        if status == 403 and "quota" in text.lower():
            return "quota exceeded: %s" % text
        if status == 413 or "quota" in text.lower():
            return "quota exceeded: %s" % text
        return "%s (HTTP %s)" % (text, status)
    if isinstance(exc, ksa.Unauthorized):
        return REFUSED
    if isinstance(exc, ksa.ConnectFailure):
        return "cannot reach the cloud: %s" % str(exc).splitlines()[0]
    if isinstance(exc, (sdk.ConfigException, ksa.MissingRequiredOptions,
                        ksa.NoMatchingPlugin)):
        return "no usable cloud credentials: %s" % str(exc).splitlines()[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def call(what, function, *args, **kwargs):
    """Call the cloud; an exception becomes a one-line BuildError."""
    try:
        return function(*args, **kwargs)
    except errors.BuildError:
        raise
    except Exception as exc:
        raise errors.BuildError("%s: %s" % (what, explain(exc))) from None
