"""Names of the build's tasks and of the values they pass on.

They are the keys of a build's saved state (TaskFlow keeps each task's
result under the task's name): keep them stable across releases, or a
build saved by one release cannot be resumed by the next.
"""
# Tasks of the base-image flow, in order.
FETCH_MEDIA = "fetch-media"
FIND_JEOS = "find-jeos"
PREPARE_MEDIA = "prepare-media"
BOOT_INSTALLER = "boot-installer"
WAIT_INSTALLER = "wait-installer"
CAPTURE_JEOS = "capture-jeos"
REMOVE_INSTALLER = "remove-installer"
KEEP_JEOS = "keep-jeos"
# Tasks that make an image of a JEOS or an image (customize flow).
CUSTOMIZE = "customize"
CAPTURE_IMAGE = "capture-image"
REMOVE_GUEST = "remove-guest"
# Of the customize flow, when its caller describes the image it made.
DESCRIBE_IMAGE = "describe-image"
# Last of the base-image flow: the JEOS of a build without a JEOS cache.
DISCARD_JEOS = "discard-jeos"

# Values (store keys) they provide and require.
MEDIA = "media"
JEOS_LOOKUP = "jeos_lookup"
MEDIA_HANDLE = "media_handle"
INSTALLER = "installer"
JEOS = "jeos"
JEOS_INFO = "jeos_info"
DISK = "disk"
GUEST = "guest"
IMAGE = "image"

# Tasks of the push flow (a provider's Glance image of a finished image).
SEND_IMAGE = "send-image"
COPY_INTO_STORES = "copy-into-stores"
# Value it provides: {"id", "os_hash_algo", "os_hash_value"} of the image.
PUSHED = "pushed"
