"""The one-unit model of Pascanu et al. (2013, sec. 2.3): the wall, its gradient, clipping."""

import numpy as np

from rnnlab.analysis import pascanu_wall


def test_final_state_matches_a_python_loop():
    w, b, x = 5.0, -2.0, 0.5
    for _ in range(50):
        x = w / (1.0 + np.exp(-x)) + b
    np.testing.assert_allclose(float(pascanu_wall.final_state(5.0, -2.0)), x, rtol=1e-6)


def test_gradient_is_large_at_the_wall_in_the_papers_region():
    # The bistable region w sigma'(0.5) > 1 (w > 4.25): the wall is where x_0 = 0.5 is the
    # unstable fixed point, b = 0.5 - w sigma(0.5).
    for w in (5.0, 6.0):
        wall = pascanu_wall.find_wall(w, -5.0, -1.0, num=801)
        b_theory, multiplier = pascanu_wall.wall_theory(w)
        assert multiplier > 1.0
        assert abs(wall.b - b_theory) < 1e-3, (wall, b_theory)
        assert abs(wall.loss_below - wall.loss_above) > 0.0 or wall.grad_norm > 1e3
        assert wall.grad_norm > 1e3, wall
    far = pascanu_wall.surface(np.array([3.0, 7.0]), np.array([-1.5, -4.5]))
    assert np.max(far.grad_norm) < 1.0  # away from the wall the surface is flat


def test_clipping_bounds_the_step_at_the_wall():
    start, lr = (4.8, -2.8), 0.5
    free = pascanu_wall.descend(start, learning_rate=lr, num_steps=20)
    clipped = pascanu_wall.descend(start, learning_rate=lr, num_steps=20, clip_norm=1.0)
    steps = np.linalg.norm(np.diff(clipped.points, axis=0), axis=1)
    assert np.max(steps) <= lr * 1.0 + 1e-12
    assert np.max(np.linalg.norm(np.diff(free.points, axis=0), axis=1)) > 10.0  # thrown away
    assert clipped.loss[-1] < free.loss[-1]
