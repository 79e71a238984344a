"""Running a base-image build (or the customization of a finished image)
on a backend: its flow assembled, run on the engine, its Result made."""
import logging

from novaimagebuilder import engine
from novaimagebuilder import pipeline
from novaimagebuilder.flows import base_image
from novaimagebuilder.tasks import context
from novaimagebuilder.tasks import names

LOG = logging.getLogger(__name__)


class Pipeline:
    """Runs one build on a backend; ``persistence`` (a TaskFlow persistence
    backend) keeps each task's result, else they are kept in memory."""

    def __init__(self, backend, media_cache, progress=None, cancel=None,
                 log=None, jeos_cache=None, jeos_policy=None, build_id=None,
                 on_jeos=None, persistence=None, checkpoint=None, owned=None,
                 claim=None):
        self._run_args = dict(
            backend=backend, media_cache=media_cache, progress=progress,
            cancel=cancel, log=log or LOG, jeos_cache=jeos_cache,
            jeos_policy=jeos_policy, build_id=build_id, on_jeos=on_jeos,
            owned=owned, claim=claim)
        self.build_id = build_id
        self.persistence = persistence
        #: Asked before each task whether the build may go on (engine.run);
        #: ``claim``, before each action in the cloud (BuildRun.guard).
        self.checkpoint = checkpoint

    def _run(self, template, parameters):
        return context.BuildRun(template=template, parameters=parameters,
                                **self._run_args)

    def run(self, template, parameters):
        """Build; returns a Result. Raises BuildError (one line) on
        failure, after the steps that ran are undone."""
        run = self._run(template, parameters)
        results = self._execute(run, base_image.get_flow(run))
        run.progress(98, "Cleaning up")
        guest = results[names.CUSTOMIZE]
        return pipeline.Result(results[names.CAPTURE_IMAGE], guest["icicle"],
                               run.clock.result(), results[names.KEEP_JEOS][0],
                               guest["ssh"])

    def customize_image(self, image, template, parameters, finish=None,
                        describe=None):
        """Boot a copy of the finished ``image`` (a backend image id),
        apply ``template``'s customization, read the ICICLE, run ``finish``
        (``(name, shell script, timeout)``, as root, the last thing before
        the power-off) and capture the result: a Result with the new image
        (``image`` itself is left as it was), after ``describe(image)`` (a
        failure there discards it). A target image's target content is
        applied this way."""
        run = self._run(template, parameters)
        results = self._execute(run, base_image.get_customize_flow(
            run, finish, describe), {names.DISK: image})
        guest = results[names.CUSTOMIZE]
        return pipeline.Result(results[names.CAPTURE_IMAGE], guest["icicle"],
                               run.clock.result(), ssh=guest["ssh"])

    def _execute(self, run, flow, store=None):
        try:
            return engine.run(flow, self.build_id, self.persistence, store,
                              self.checkpoint)
        finally:
            run.report_left()
