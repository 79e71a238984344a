"""A test cloud plugin whose "provider" is a directory."""
import os
import shutil

from imgfac_nova import images
from imgfac_nova import parameters
from imgfac_nova.plugins import base


class FileCloud(base.CloudPlugin):
    """Target "filecopy": the base data plus a trailer; providers are dirs."""

    info = base.PluginInfo(type="cloud", targets=("filecopy",),
                           description="copies images into a directory",
                           maintainer="tests", version="1.0",
                           license="Apache-2.0")
    parameters = (parameters.Parameter("trailer", "bytes appended",
                                       default="TARGET"),)

    def create_target_image(self, build, target, base_image, parameters):
        build.progress(50, "Appending trailer")
        with open(build.body_path, "ab") as handle:
            handle.write(parameters["trailer"].encode())

    def push_image_to_provider(self, build, provider, credentials, target_image,
                               parameters):
        if credentials.strip() != "let-me-in":
            raise PermissionError("the provider refused the credentials")
        build.progress(50, "Copying to %s" % provider)
        destination = os.path.join(provider, build.identifier + ".img")
        shutil.copyfile(target_image.data, destination)
        build.set_identifier_on_provider(destination)

    def delete_from_provider(self, image, provider, credentials, parameters):
        os.unlink(image.identifier_on_provider)

    def delete_target_image(self, image, parameters):
        """A target whose "Glance image" is a file: that file goes."""
        os.unlink(image.properties[images.GLANCE_ID_PROPERTY])
