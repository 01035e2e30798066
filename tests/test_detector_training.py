"""The detector really learns: a tiny one, trained for a few steps on a few engine scenes, finds a planted digit.

Also the data engine's contract: deterministic by seed, truth boxes on the ink, training and test digits
never mixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import engine, heatmap
from digitdata.frames import detector_input

pytestmark = pytest.mark.slow

# One clear digit per frame, no distractors: what a few training steps can learn.
PLAIN = engine.EngineConfig(frame_share=1.0, single_share=1.0, touching_p=0.0, bright_ink_p=0.0, ruled_p=0.0,
                            squared_p=0.0, dotted_p=0.0, cells_p=0.0, sticky_p=0.0, desk_p=0.0, hard_shadow_p=0.0,
                            soft_shadow_p=0.0, glare_p=0.0, text_p=0.0, scribble_p=0.0, underline_p=0.0, specks_p=0.0,
                            show_through_p=0.0, min_height_px=60.0)


def test_engine_is_deterministic_and_boxes_hold_the_ink(mnist):
    a = engine.render(np.random.default_rng(3), mnist.x_test, mnist.y_test)
    b = engine.render(np.random.default_rng(3), mnist.x_test, mnist.y_test)
    assert np.array_equal(a.image_bgr, b.image_bgr) and a.boxes == b.boxes and a.text == b.text
    for seed in range(20):
        scene = engine.render(np.random.default_rng(seed), mnist.x_test, mnist.y_test)
        h, w = scene.image_bgr.shape[:2]
        assert len(scene.boxes) == len(scene.digits) == len("".join(scene.lines)), scene.params
        for x, y, bw, bh in scene.boxes:
            assert bw > 0 and bh > 0
            inside = (min(x + bw, w) - max(x, 0)) * (min(y + bh, h) - max(y, 0)) / (bw * bh)
            assert inside > 0.9, (seed, scene.params)  # whole, or a tight crop that shaved a stroke
        assert scene.params["digit_index"] and all(0 <= i < len(mnist.x_test) for i in scene.params["digit_index"])


def test_scene_sets_use_disjoint_digits(mnist):
    from digitdata.scene_sets import digit_split, real_digits_in_training

    train_x, _ = digit_split(mnist, "train")
    val_x, _ = digit_split(mnist, "validation")
    # the training part also writes with the real training digits (nsysu, `digitdata.realsets`) when they are there
    assert len(train_x) - real_digits_in_training() + len(val_x) == len(mnist.x_train)
    train_keys = {bytes(d) for d in train_x[:2000]}
    assert not any(bytes(d) in train_keys for d in val_x[:500] if d.any())


def test_a_tiny_detector_learns_to_find_a_planted_digit(mnist):
    keras = pytest.importorskip("keras")
    from train.detector import box_loss, build_detector, focal_loss
    from train.detector_trainer import targets

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    scenes = [engine.render(rng, mnist.x_train[:2000], mnist.y_train[:2000], PLAIN) for _ in range(48)]
    inputs, truths = [], []
    for s in scenes:
        x, lb = detector_input(s.image_bgr)
        inputs.append(x)
        truths.append(lb.to_input(np.asarray(s.boxes, np.float32)))
    x = np.stack(inputs)[..., None].astype(np.float32) / 255.0
    heat, box = targets(truths, x.shape[1:3])
    y = {"heat": heat, "box": box}

    model = build_detector(width=8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss={"heat": focal_loss, "box": box_loss})
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=8, epochs=30, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert after < 0.5 * before, (before, after)

    planted = engine.render(np.random.default_rng(99), mnist.x_test, mnist.y_test, PLAIN)
    xin, lb = detector_input(planted.image_bgr)
    out = model(xin[None, ..., None].astype(np.float32) / 255.0, training=False)
    heat = np.asarray(out["heat"])[0, ..., 0]
    iy, ix = np.unravel_index(heat.argmax(), heat.shape)
    bx, by, bw, bh = lb.to_input(np.asarray(planted.boxes, np.float32))[0]
    cx, cy = (ix + 0.5) * heatmap.STRIDE, (iy + 0.5) * heatmap.STRIDE
    assert bx <= cx <= bx + bw and by <= cy <= by + bh, ((cx, cy), (bx, by, bw, bh))
