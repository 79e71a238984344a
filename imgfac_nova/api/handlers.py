"""The Image Factory REST v2 resources, as handlers over the BuildService.

Every image belongs to the Keystone project that asked for it; an image the
caller may not see (``imgfac:image:get``) answers 404, as an unknown id does.
"""
import logging

import pbr.version
import webob
import webob.static
from oslo_context import context as oslo_context

from imgfac_nova import cleanup
from imgfac_nova import config
from imgfac_nova import images
from imgfac_nova import jobboard
from imgfac_nova import parameters
from imgfac_nova import store
from imgfac_nova.api import bodies
from imgfac_nova.api import inputs
from imgfac_nova.api import policy
from imgfac_nova.api import router
from imgfac_nova.api import service as build_service
from imgfac_nova.api import trusts
from imgfac_nova.api import views
from imgfac_nova.plugins import manager
from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

API_VERSION = "2.0"
#: Bad input from a Builder verb: 400 with its one line.
_BAD_INPUT = (manager.PluginError, parameters.ParameterError, errors.BuildError,
              store.NotFound, ValueError)


def _credentials(request):
    return oslo_context.RequestContext.from_environ(
        request.environ).to_policy_values()


def _base_url(request):
    return request.host_url + request.script_name


class Api:
    """The handlers; :meth:`routes` is the (method, path) table."""

    def __init__(self, service, enforcer, trusted=False):
        """``trusted``: every caller is the operator (noauth), whose input
        is not vetted, as with the CLI."""
        self.service = service
        self.store = service.store
        self.enforcer = enforcer
        self.inputs = None if trusted else inputs.InputPolicy(
            service.conf, service.plugins)

    def routes(self):
        base = "/imagefactory/base_images/{base_image_id}"
        target = "/imagefactory/target_images/{target_image_id}"
        nested_target = base + "/target_images/{target_image_id}"
        table = [("GET", "/imagefactory", self.info),
                 ("GET", "/imagefactory/plugins", self.list_plugins),
                 ("GET", "/imagefactory/plugins/{plugin_id}", self.get_plugin)]
        # (collection path, kind, the path's parent ids)
        collections = [
            ("/imagefactory/base_images", images.BASE_IMAGE),
            ("/imagefactory/target_images", images.TARGET_IMAGE),
            ("/imagefactory/provider_images", images.PROVIDER_IMAGE),
            (base + "/target_images", images.TARGET_IMAGE),
            (target + "/provider_images", images.PROVIDER_IMAGE),
            (nested_target + "/provider_images", images.PROVIDER_IMAGE),
        ]
        for path, kind in collections:
            one = "%s/{image_id}" % path
            table += [
                ("GET", path, self._bind(self.list_images, kind)),
                ("POST", path, self._bind(self.create_image, kind)),
                ("GET", one, self._bind(self.get_image, kind)),
                ("DELETE", one, self._bind(self.delete_image, kind)),
                ("GET", one + "/build_log", self._bind(self.build_log, kind)),
            ]
            if kind != images.PROVIDER_IMAGE:
                table.append(("GET", one + "/raw_image",
                              self._bind(self.raw_image, kind)))
        return table

    @staticmethod
    def _bind(handler, kind):
        def bound(request, **ids):
            return handler(request, kind, **ids)
        bound.media_type = getattr(handler, "media_type", router.JSON)
        return bound

    # -- looking images up -------------------------------------------------

    def _may(self, request, rule, record):
        """Whether policy allows ``rule`` on ``record``. The target is only
        the record's project, so each (rule, project) is decided once per
        request (a list of 1,000 images costs a few checks, not 1,000)."""
        decided = request.environ.setdefault("imgfac_nova.policy", {})
        key = (rule, record.project_id)
        if key not in decided:
            credentials = request.environ.get("imgfac_nova.credentials")
            if credentials is None:
                credentials = request.environ["imgfac_nova.credentials"] = \
                    _credentials(request)
            decided[key] = self.enforcer.enforce(
                rule, {"project_id": record.project_id}, credentials)
        return decided[key]

    def _visible(self, request, identifier, kind=None, status=400):
        """The record ``identifier`` if the caller may see it, else
        ApiError(``status``) saying there is no such image."""
        try:
            record = self.store.get(identifier)
        except store.NotFound:
            record = None
        if record is None or (kind and record.type != kind) or \
                not self._may(request, policy.IMAGE_GET, record):
            raise router.ApiError(status, "no %s with id %s" % (
                views.NAMES[kind][1] if kind else "image", identifier))
        return record

    def _parents(self, request, kind, base_image_id=None, target_image_id=None):
        """Check the parents named in a nested path; returns the field ->
        id the images of ``kind`` under this path must have."""
        wanted = {}
        if base_image_id:
            self._visible(request, base_image_id, images.BASE_IMAGE, 404)
            wanted["base_image_id"] = base_image_id
        if target_image_id:
            parent = self._visible(request, target_image_id,
                                   images.TARGET_IMAGE, 404)
            if base_image_id and parent.base_image_id != base_image_id:
                raise router.ApiError(404, "target image %s is not made from "
                                      "base image %s" % (target_image_id,
                                                         base_image_id))
            wanted["target_image_id"] = target_image_id
        if kind == images.TARGET_IMAGE:
            wanted.pop("target_image_id", None)
        return wanted

    def _image(self, request, kind, image_id, **parent_ids):
        wanted = self._parents(request, kind, **parent_ids)
        record = self._visible(request, image_id, kind, 404)
        if any(getattr(record, k) != v for k, v in wanted.items()):
            raise router.ApiError(404, "no %s %s under %s" % (
                views.NAMES[kind][1], image_id, request.path_info.rsplit(
                    "/", 1)[0]))
        return record

    def _children(self, request, record):
        child = views.CHILD.get(record.type)
        if not child:
            return []
        return [r for r in self.store.list({
            "type": child, views.PARENT_FIELD[child]: record.identifier},
            views.LISTED) if self._may(request, policy.IMAGE_GET, r)]

    # -- handlers ----------------------------------------------------------

    def info(self, request):
        return router.json_response({
            "name": "imgfac-nova",
            "version": pbr.version.VersionInfo("imgfac-nova").version_string(),
            "api_version": API_VERSION})

    def list_images(self, request, kind, **parent_ids):
        wanted = self._parents(request, kind, **parent_ids)
        wanted["type"] = kind
        found = [r for r in self.store.list(wanted, views.LISTED)
                 if self._may(request, policy.IMAGE_GET, r)]
        return router.json_response(
            views.collection(_base_url(request), kind, found))

    def get_image(self, request, kind, image_id, **parent_ids):
        record = self._image(request, kind, image_id, **parent_ids)
        return router.json_response(views.member(
            _base_url(request), record, self._children(request, record)))

    def raw_image(self, request, kind, image_id, **parent_ids):
        record = self._image(request, kind, image_id, **parent_ids)
        if not record.data or record.status != images.COMPLETE:
            raise router.ApiError(404, "%s %s has no local image data" % (
                views.NAMES[kind][1], image_id))
        try:
            app = webob.static.FileApp(record.data,
                                       content_type="application/octet-stream")
            return request.get_response(app)
        except OSError as exc:
            raise router.ApiError(404, "the data of %s %s is gone: %s" % (
                views.NAMES[kind][1], image_id, exc.strerror)) from None
    raw_image.media_type = "application/octet-stream"

    def build_log(self, request, kind, image_id, **parent_ids):
        """The image's build log from the database, as far as it is written
        (batches of a few seconds): the same from every API process,
        wherever the build runs."""
        record = self._image(request, kind, image_id, **parent_ids)
        response = webob.Response(content_type="text/plain", charset="utf-8")
        response.text = self.store.read_log(record.identifier)
        return response
    build_log.media_type = "text/plain"

    def create_image(self, request, kind, **parent_ids):
        caller = inputs.Caller(self.enforcer, _credentials(request))
        if not caller.project_id:
            raise router.ApiError(403, "creating images needs a "
                                  "project-scoped token")
        caller.require(policy.IMAGE_CREATE, "creating images in project %s"
                       % caller.project_id)
        self._parents(request, kind, **parent_ids)
        fields = bodies.image_fields(request, views.NAMES[kind][1])
        values = dict(bodies.json_object(fields.get("parameters") or {},
                                         "parameters"))
        urls = inputs.callbacks(values)
        try:
            snapshot = parameters.Parameter("snapshot", "", type="bool").cast(
                values.pop("snapshot", False), "imagefactory")
        except parameters.ParameterError as exc:
            raise router.ApiError(400, str(exc)) from None
        template = bodies.parse_template(
            fields.get("template"), config.template_limits(self.service.conf))
        ids = {"base_image_id": parent_ids.get("base_image_id") or
               fields.get("base_image_id"),
               "target_image_id": parent_ids.get("target_image_id") or
               fields.get("target_image_id")}
        start = bodies.verb(kind, fields, values, template, ids, snapshot)
        parents = {}
        for field, parent_kind in (("base_image_id", images.BASE_IMAGE),
                                   ("target_image_id", images.TARGET_IMAGE)):
            if ids[field]:
                parents[field] = self._visible(
                    request, ids[field], parent_kind,
                    404 if field in parent_ids else 400)
        url_check = None
        if self.inputs is not None:
            url_check = self.inputs.vet(
                caller, values, template, provider=fields.get("provider")
                if kind == images.PROVIDER_IMAGE else None,
                credentials=fields.get("credentials"), callbacks=urls,
                os_plugin=self._os_plugin(template, values, parents))
        base_url = _base_url(request)
        try:
            if kind == images.BASE_IMAGE and not urls and \
                    self.service.board is not None:
                # A worker runs it; callbacks are sent by the daemon that
                # runs a build, so a build with callbacks runs here.
                record = self.service.post(
                    template, values, project_id=caller.project_id,
                    cloud_auth=request.environ.get("keystone.token_auth"),
                    denied_networks=self._denied(caller))
            else:
                on_change = self.service.notifier.sender(
                    urls, lambda record: views.member(base_url, record)) \
                    if urls else None
                job = self.service.start(
                    start, project_id=caller.project_id,
                    cloud_auth=request.environ.get("keystone.token_auth"),
                    on_change=on_change, url_check=url_check)
                record = self.store.get(job.image.identifier)
        except (build_service.Stopping, trusts.TrustError,
                jobboard.JobboardError) as exc:
            raise router.ApiError(503, str(exc)) from None
        except _BAD_INPUT as exc:
            raise router.ApiError(400, str(exc)) from None
        LOG.info("%s %s started for project %s", record.type,
                 record.identifier, record.project_id)
        return router.json_response(views.member(base_url, record), 202)

    def _denied(self, caller):
        """The networks ``caller``'s URLs may not reach, for a worker to
        check them as this daemon would (None: a trusted daemon's)."""
        if self.inputs is None:
            return None
        return [] if caller.may(policy.INTERNAL_URLS) else \
            list(self.inputs.denied)

    def _os_plugin(self, template, values, parents):
        """The OS plugin the build would run: the template's, else the
        base image's (its target content runs there)."""
        if template is not None:
            try:
                return self.service.builder().os_plugin_name(template,
                                                             values)
            except manager.PluginError as exc:
                raise router.ApiError(400, str(exc)) from None
        for record in parents.values():
            if record.plugin in self.service.plugins.os_plugins:
                return record.plugin
            base = record.base_image_id and self.store.get(
                record.base_image_id)
            if base:
                return base.plugin
        return None

    def delete_image(self, request, kind, image_id, **parent_ids):
        record = self._image(request, kind, image_id, **parent_ids)
        if not self._may(request, policy.IMAGE_DELETE, record):
            raise router.ApiError(403, "policy does not allow deleting %s"
                                  % image_id)
        fields = bodies.image_fields(request, views.NAMES[kind][1], required=False)
        builder = self.service.builder(
            cloud_auth=request.environ.get("keystone.token_auth"))
        try:
            done = cleanup.delete(
                builder, image_id,
                bodies.json_object(fields.get("parameters") or {},
                                   "parameters"),
                provider=fields.get("provider"),
                credentials=fields.get("credentials"))
        except store.NotFound:
            raise router.ApiError(404, "no %s with id %s" % (
                views.NAMES[kind][1], image_id)) from None
        if done.status != images.DELETED:
            raise router.ApiError(500, "deleting %s failed: %s"
                                  % (image_id, done.error))
        self.service.release(record.trust_id)
        return webob.Response(status=204)

    def _plugins_allowed(self, request):
        inputs.Caller(self.enforcer, _credentials(request)).require(
            policy.PLUGIN_GET, "listing plugins")

    def list_plugins(self, request):
        self._plugins_allowed(request)
        base_url = _base_url(request)
        return router.json_response({"plugins": [
            views.plugin(base_url, name, cls) for name, cls in
            sorted(self.service.plugins.all().items())]})

    def get_plugin(self, request, plugin_id):
        self._plugins_allowed(request)
        cls = self.service.plugins.all().get(plugin_id)
        if cls is None:
            raise router.ApiError(404, "no plugin %s" % plugin_id)
        return router.json_response(views.plugin(_base_url(request),
                                                 plugin_id, cls))
