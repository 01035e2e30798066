"""What every stage shares: MNIST (found, fetched, verified), the data engine (scenes of handwritten numbers
with their truth, in named mixes) and scene sets, number lines for the recognizer (`lines`), ruled mark sheets
with every cell's truth (`sheets`), how a picture
becomes each model's input (`frames` for the region finder, `lines.line_input` for the recognizer, `crops` for
the classifier, `pixels` for the convention), the models' output contracts (`regions`: the number-line map;
`ctc`: the recognizer's columns; `heatmap`: the digit detector the region finder is pretrained as), atomic file
writes, the progress of long steps (`progress`), and the report figures.

The bottom layer of the import graph: `train`, `convert`, `edge_app` and `benchmarks` import from here, and
`digitdata` imports none of them. Needs numpy, OpenCV and the standard library; never
TensorFlow. `digitdata.plots` alone needs matplotlib (the `[train]` extra): the training and conversion
reports import it, the device never does (tests/test_no_tensorflow.py checks both).

    python -m digitdata.engine --count 8 --out /tmp/scenes --boxes
"""
