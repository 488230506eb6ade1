"""Where a build's samples come from: its own detections or a folder of images (release imports:
shards.release); ``pick`` chooses one and runs its tasks."""
