"""What every stage shares: MNIST (found, fetched, verified), the camera-like scene generator, the pixel
convention of the model input, atomic file writes, and the report figures.

The bottom layer of the import graph: `train`, `convert`, `edge_app` and `benchmarks` import from here, and
`digitdata` imports none of them. Needs numpy and the standard library (`scenes` also OpenCV); never
TensorFlow. `digitdata.plots` alone needs matplotlib (the `[train]` extra): the training and conversion
reports import it, the device never does (tests/test_no_tensorflow.py checks both).

    python -m digitdata.scenes --count 8 --out /tmp/scenes
"""
