"""What every stage shares: MNIST (found, fetched, verified), the data engine (scenes of handwritten numbers
with their truth) and scene sets, how a picture becomes each model's input (`frames` for the detector,
`crops` for the classifier, `pixels` for the convention), the detector's output contract (`heatmap`),
atomic file writes, and the report figures.

The bottom layer of the import graph: `train`, `convert`, `edge_app` and `benchmarks` import from here, and
`digitdata` imports none of them. Needs numpy, OpenCV and the standard library; never
TensorFlow. `digitdata.plots` alone needs matplotlib (the `[train]` extra): the training and conversion
reports import it, the device never does (tests/test_no_tensorflow.py checks both).

    python -m digitdata.engine --count 8 --out /tmp/scenes --boxes
"""
