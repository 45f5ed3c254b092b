"""How far Keras' SGD momentum drifts from TF1's MomentumOptimizer under
the poly schedule (issue 13, point 14).

TF1 (the original): a = m * a + g; w -= lr_t * a  (today's rate scales the
whole accumulated gradient). Keras: v = m * v - lr_t * g; w += v (each
gradient keeps the rate of its own step). With a constant rate the two are
the same; under a decaying rate Keras applies past gradients at their older,
larger rates. Two measurements over the original's VOC schedule:

1. constant gradient: the per-step update of each form, relative to TF1's;
2. a noisy quadratic (the same gradient noise for both forms): the distance
   between the two weight trajectories' end points, relative to the
   distance TF1's weights travelled.

Command: .venv/bin/python bench/momentum_drift.py
"""

from __future__ import annotations

import numpy as np


def poly(base, steps, power):
  t = np.arange(steps)
  return base * (1.0 - t / steps) ** power


def constant_gradient(rates, momentum):
  """Per-step update of each form for a gradient of 1."""
  tf1, keras = np.empty_like(rates), np.empty_like(rates)
  a = v = 0.0
  for t, lr in enumerate(rates):
    a = momentum * a + 1.0
    v = momentum * v + lr
    tf1[t], keras[t] = lr * a, v
  return tf1, keras


def noisy_quadratic(rates, momentum, dim=64, noise=1.0, seed=0):
  """End points of both forms on 0.5 * |h * (w - w*)|^2 + noise."""
  rng = np.random.default_rng(seed)
  curvature = np.exp(rng.uniform(np.log(0.1), np.log(10.0), dim))
  target = rng.normal(size=dim)
  w_tf1 = np.zeros(dim)
  w_keras = np.zeros(dim)
  a = np.zeros(dim)
  v = np.zeros(dim)
  for lr in rates:
    shared = noise * rng.normal(size=dim)
    a = momentum * a + curvature * (w_tf1 - target) + shared
    w_tf1 -= lr * a
    v = momentum * v - lr * (curvature * (w_keras - target) + shared)
    w_keras += v
  return w_tf1, w_keras


def main():
  base, steps, power, momentum = 0.007, 30000, 0.9, 0.9
  rates = poly(base, steps, power)
  tf1, keras = constant_gradient(rates, momentum)
  relative = keras / tf1 - 1.0
  print(f"poly schedule: base {base}, {steps} steps, power {power}, "
        f"momentum {momentum}")
  # From step 20 on (the accumulators have filled) up to `end`.
  for end in (steps - 3000, steps - 1000, steps - 100, steps - 10, steps):
    print(f"  constant gradient, steps 20..{end}: max |Keras update / TF1 "
          f"update - 1| = {np.abs(relative[20:end]).max():.2e}")
  total = keras.sum() / tf1.sum() - 1.0
  print(f"  constant gradient, whole run: total displacement Keras / TF1 - 1 "
        f"= {total:.2e}")
  w_tf1, w_keras = noisy_quadratic(rates, momentum)
  drift = np.linalg.norm(w_keras - w_tf1) / np.linalg.norm(w_tf1)
  print(f"  noisy quadratic (64 dims): |w_keras - w_tf1| / |w_tf1| = "
        f"{drift:.2e}")


if __name__ == "__main__":
  main()
