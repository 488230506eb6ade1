"""Person detectors shared by the stages that look for people in frames.

``detect`` runs them on sampled frames; ``build-shards --from-dets`` runs them to check that a
re-downloaded video matches the released boxes. Each is ``detector(frames) -> [(N, 5) float32
x1, y1, x2, y2, score]`` in source pixels, best score first. ``blazepose`` is the offline keypoint
model: detect's ``--keypoints blazepose``, and how face blurring finds the head of a crop.
"""
