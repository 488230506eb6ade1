"""Where a build's samples come from: its own detections or a folder of images (release imports:
shards.release); ``pick`` chooses one and runs its tasks."""

# The build-shards settings that name something to import (a folder of crops, the LUPerson LMDB,
# the released boxes): one at most; with none, the build cuts the root's own detections and the
# command line runs filter and detect first.
IMPORTER_FIELDS = ("from_images", "from_lmdb", "from_dets")
