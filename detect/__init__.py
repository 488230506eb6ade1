"""detect: sample frames, detect persons (YOLOv5 / HOG), HRNet keypoints, validity rules (§3.1)."""
