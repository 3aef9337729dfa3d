"""A BODY_25 OpenPose skeleton of one standing person (pixels of a 640-wide frame), shared by the tests
that write small walking sequences (each frame shifts it 4 px to the right)."""

import numpy as np

BODY25_STANDING = np.array(
    [
        [320, 100],
        [320, 140],
        [290, 140],
        [280, 190],
        [275, 240],
        [350, 140],
        [360, 190],
        [365, 240],
        [320, 240],
        [300, 240],
        [300, 320],
        [300, 400],
        [340, 240],
        [340, 320],
        [340, 400],
        [312, 92],
        [328, 92],
        [305, 96],
        [335, 96],
        [340, 410],
        [345, 410],
        [340, 405],
        [300, 410],
        [295, 410],
        [300, 405],
    ],
    float,
)
