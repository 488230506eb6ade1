"""Media shared by the stages: exact frame sampling and the frame index of a video."""
