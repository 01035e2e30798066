"""The reader's two models really learn: a tiny recognizer and a tiny region finder, trained for a few steps
on a few rendered regions and scenes, do what no untrained one does."""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import ctc, engine, lines, regions
from digitdata.frames import detector_input

pytestmark = pytest.mark.slow

# Single clear digits in MNIST's own look, nothing else: what a few training steps can learn.
PLAIN_LINES = lines.LineConfig(empty_p=0.0, mnist_p=0.3, long_p=0.0, touching_p=0.0, word_p=0.0, inside_p=0.0,
                               scribble_p=0.0, rule_p=0.0, cells_p=0.0, border_p=0.0, bright_ink_p=0.0,
                               elastic_p=0.0, wide_region_p=0.0, pad_x=(0.1, 0.3), pad_y=(0.0, 0.3),
                               noise_sigma=(0.0, 2.0), pen_p=0.0, small_zero_p=0.0)


def test_a_tiny_recognizer_learns_to_read_digits(mnist):
    keras = pytest.importorskip("keras")
    from train.recognizer import build_recognizer, ctc_loss, encode_texts

    keras.utils.set_random_seed(0)
    x, texts, _ = lines.render_inputs(1, 384, mnist.x_train[:3000], mnist.y_train[:3000], PLAIN_LINES)
    x = x[..., None].astype(np.float32) / 255.0
    y = encode_texts(texts)
    model = build_recognizer(width=8, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=ctc_loss)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.3 * before, (before, after)
    read = ctc.greedy_batch(np.asarray(model(x[:64], training=False)))
    right = np.mean([r == t for r, t in zip(read, texts[:64], strict=True)])
    assert right > 0.5, list(zip(read, texts[:64], strict=True))


# One clear number per frame, no distractors.
PLAIN_SCENES = engine.EngineConfig(frame_share=1.0, single_share=0.5, max_digits=4, long_share=0.0,
                                   second_line_p=0.0, touching_p=0.0, bright_ink_p=0.0, ruled_p=0.0, squared_p=0.0,
                                   dotted_p=0.0, cells_p=0.0, sticky_p=0.0, desk_p=0.0, hard_shadow_p=0.0,
                                   soft_shadow_p=0.0, glare_p=0.0, text_p=0.0, scribble_p=0.0, underline_p=0.0,
                                   specks_p=0.0, show_through_p=0.0, min_height_px=50.0, pen_p=0.0, small_zero_p=0.0)


def test_a_tiny_region_finder_learns_where_the_number_is(mnist):
    keras = pytest.importorskip("keras")
    from train.region_finder import build_region_finder, region_loss

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs, maps = [], []
    for _ in range(40):
        s = engine.render(rng, mnist.x_train[:2000], mnist.y_train[:2000], PLAIN_SCENES)
        x, lb = detector_input(s.image_bgr)
        inputs.append(x)
        boxes = lb.to_input(np.asarray(s.boxes, np.float32))
        maps.append(regions.encode(regions.split_lines(boxes, s.text), (64, 80)))
    x = np.stack(inputs)[..., None].astype(np.float32) / 255.0
    y = np.stack([np.stack([m, np.ones_like(m)], axis=-1) for m in maps])
    model = build_region_finder(width=8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=region_loss)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=25, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.5 * before, (before, after)

    planted = engine.render(np.random.default_rng(99), mnist.x_test, mnist.y_test, PLAIN_SCENES)
    xin, lb = detector_input(planted.image_bgr)
    prob = np.asarray(model(xin[None, ..., None].astype(np.float32) / 255.0, training=False))[0, ..., 0]
    iy, ix = np.unravel_index(prob.argmax(), prob.shape)
    bx, by, bw, bh = regions.true_line_boxes(lb.to_input(np.asarray(planted.boxes, np.float32)), planted.text)[0]
    cx, cy = (ix + 0.5) * regions.STRIDE, (iy + 0.5) * regions.STRIDE
    assert bx <= cx <= bx + bw and by <= cy <= by + bh, ((cx, cy), (bx, by, bw, bh))
