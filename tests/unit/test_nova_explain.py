"""One-line explanations of cloud errors."""
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from novaimagebuilder import cloud


def test_wrapped_401_is_bad_credentials():
    try:
        try:
            raise ksa.Unauthorized("The request you have made requires "
                                   "authentication.", http_status=401)
        except ksa.Unauthorized as inner:
            raise sdk.SDKException(str(inner)) from inner
    except sdk.SDKException as exc:
        assert cloud.explain(exc) == (
            "the cloud refused the credentials (HTTP 401)")


def test_http_errors_keep_the_first_line_and_status():
    exc = sdk.HttpException(message="Conflict", details="Quota exceeded for "
                            "instances: Requested 1, but already used 10\n"
                            "more", http_status=403)
    assert cloud.explain(exc) == ("quota exceeded: Quota exceeded for "
                                  "instances: Requested 1, but already used 10")
    exc = sdk.HttpException(message="x", details="No valid host",
                            http_status=400)
    assert cloud.explain(exc) == "No valid host (HTTP 400)"


def test_connection_failure():
    exc = ksa.ConnectFailure("Unable to establish connection to "
                             "http://127.0.0.1:1/v3\nmore")
    assert cloud.explain(exc).startswith("cannot reach the cloud: Unable to")
