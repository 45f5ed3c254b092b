"""Time of the Lovasz-softmax loss (forward and backward) on a training
batch, per ``config.train.lovasz_pixel_stride``, beside nothing else: the
figure the config's comment and bench/README.md quote.

  python bench/lovasz_cost.py --batch=8 --height=289 --width=385 --classes=11
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from deeplab import loss as loss_lib

_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_HEIGHT = flags.DEFINE_integer("height", 289, "Crop height.")
_WIDTH = flags.DEFINE_integer("width", 385, "Crop width.")
_CLASSES = flags.DEFINE_integer("classes", 11, "Classes (one more label value is the ignore label).")
_STRIDES = flags.DEFINE_list("strides", ["1", "2"], "Pixel strides to time.")
_CALLS = flags.DEFINE_integer("calls", 3, "Timed calls per stride (after one warm-up).")


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  shape = (_BATCH.value, _HEIGHT.value, _WIDTH.value)
  logits = tf.Variable(rng.normal(size=shape + (_CLASSES.value,)).astype(np.float32))
  labels = tf.constant(rng.integers(0, _CLASSES.value + 1, size=shape))
  for stride in map(int, _STRIDES.value):

    @tf.function
    def step(every=stride):
      with tf.GradientTape() as tape:
        value = loss_lib.lovasz_softmax(logits[:, ::every, ::every],
                                        labels[:, ::every, ::every],
                                        _CLASSES.value, _CLASSES.value)
      return tape.gradient(value, logits)

    step()
    start = time.perf_counter()
    for _ in range(_CALLS.value):
      step()
    seconds = (time.perf_counter() - start) / _CALLS.value
    print(f"stride {stride}: {seconds:.3f} s per forward + backward, "
          f"batch {shape}, {_CLASSES.value} classes")


if __name__ == "__main__":
  app.run(main)
