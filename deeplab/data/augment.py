"""Training and evaluation preprocessing, as the original's input_preprocess.

Order for training: resize to range (the original's min/max resize value
and resize factor, off by default), random scale (image bilinear with aligned corners,
label nearest neighbour), pad bottom/right to the crop size (image with the
mean pixel 127.5, label with the ignore label), random crop, random
left-right flip, optional photometric jitter, then pixels to [-1, 1].
Labels keep the crop's full resolution; the loss upsamples the logits.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import tensorflow as tf

MEAN_PIXEL = 127.5  # Pads images; maps to 0 after normalization.


def normalize(image: tf.Tensor) -> tf.Tensor:
  """uint8 or float pixels [0, 255] -> float32 [-1, 1] (x / 127.5 - 1)."""
  return tf.cast(image, tf.float32) / 127.5 - 1.0


def random_scale_factor(min_scale: float, max_scale: float, step: float,
                        seed=None) -> tf.Tensor:
  """Draws a scale in [min, max]: uniformly from the grid min, min+step, ...

  With ``step == 0`` the scale is continuous in [min, max).
  """
  if min_scale == max_scale:
    return tf.constant(min_scale, tf.float32)
  if step == 0:
    return tf.random.stateless_uniform([], seed, min_scale, max_scale) \
        if seed is not None else tf.random.uniform([], min_scale, max_scale)
  count = int(round((max_scale - min_scale) / step)) + 1
  grid = tf.linspace(float(min_scale), float(max_scale), count)
  index = (tf.random.stateless_uniform([], seed, 0, count, tf.int32)
           if seed is not None else tf.random.uniform([], 0, count, tf.int32))
  return grid[index]


def scale_image_and_label(image, label, scale):
  """Resizes by ``scale``: the image bilinearly, the label by nearest id."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  return resize_image_and_label(image, label, tf.cast(shape * scale, tf.int32))


def resize_image_and_label(image, label, size):
  """Resizes to ``size``: the image bilinearly, the label by nearest id,
  corners aligned (the original's convention)."""
  image = tf.raw_ops.ResizeBilinear(
      images=tf.cast(image[None], tf.float32), size=size,
      align_corners=True)[0]
  label = tf.raw_ops.ResizeNearestNeighbor(
      images=label[None], size=size, align_corners=True)[0]
  return image, label


def resize_to_range_size(height, width, min_size: float = 0,
                         max_size: float = 0, factor: int = 0):
  """The size the original's ``resize_to_range`` gives an image.

  The shorter side becomes ``min_size`` unless the longer one would then
  exceed ``max_size``, in which case the longer side becomes ``max_size``
  (sides rounded up); with ``factor`` both sides are then raised to the next
  ``factor * k + 1``, ``max_size`` having first been lowered to such a size
  so the result never exceeds it. 0 disables a bound.

  Args:
    height: image height (int or scalar tensor).
    width: image width.
    min_size: target of the shorter side (0: none, the image's own).
    max_size: bound of the longer side (0: none).
    factor: output sides of the form ``factor * k + 1`` (0: any).

  Returns:
    int32 tensor [2]: (new height, new width).
  """
  size = tf.cast(tf.stack([height, width]), tf.float32)
  new_size = tf.cast(size, tf.int32)
  if min_size:
    new_size = tf.cast(tf.math.ceil(size * (min_size / tf.reduce_min(size))),
                       tf.int32)
  if max_size:
    max_size = float(max_size)
    if factor:
      max_size = max_size - (max_size - 1) % factor
    small = tf.cast(tf.math.ceil(size * (max_size / tf.reduce_max(size))),
                    tf.int32)
    new_size = tf.where(
        tf.cast(tf.reduce_max(new_size), tf.float32) > max_size, small,
        new_size)
  if factor:
    new_size += (factor - (new_size - 1) % factor) % factor
  return new_size


def resize_to_range(image, label, min_size: float = 0, max_size: float = 0,
                    factor: int = 0):
  """Resizes image (bilinear) and label (nearest id), aligned corners, to
  ``resize_to_range_size``; unchanged if no bound is set."""
  if not (min_size or max_size):
    return image, label
  shape = tf.shape(image)
  return resize_image_and_label(
      image, label,
      resize_to_range_size(shape[0], shape[1], min_size, max_size, factor))


def pad_to_size(image, label, height: int, width: int, ignore_label: int):
  """Pads bottom and right up to (height, width) if smaller."""
  shape = tf.shape(image)
  pad_h = tf.maximum(height - shape[0], 0)
  pad_w = tf.maximum(width - shape[1], 0)
  paddings = [[0, pad_h], [0, pad_w], [0, 0]]
  image = tf.pad(image, paddings, constant_values=MEAN_PIXEL)
  label = tf.pad(label, paddings, constant_values=tf.cast(ignore_label, label.dtype))
  return image, label


def random_crop(image, label, height: int, width: int, seed=None):
  """The same random (height, width) window of image and label."""
  stacked = tf.concat([image, tf.cast(label, image.dtype)], axis=-1)
  size = [height, width, tf.shape(stacked)[-1]]
  cropped = (tf.image.stateless_random_crop(stacked, size, seed)
             if seed is not None else tf.image.random_crop(stacked, size))
  return cropped[..., :3], tf.cast(cropped[..., 3:], label.dtype)


def random_flip(image, label, seed=None):
  flip = ((tf.random.stateless_uniform([], seed) if seed is not None
           else tf.random.uniform([])) < 0.5)
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  return image, label


def photometric(image, seed=None):
  """Brightness, contrast and saturation jitter on [0, 255] pixels."""
  seeds = (tf.random.experimental.stateless_split(seed, 3)
           if seed is not None else [None] * 3)
  x = image / 255.0
  if seed is not None:
    x = tf.image.stateless_random_brightness(x, 0.125, seeds[0])
    x = tf.image.stateless_random_contrast(x, 0.75, 1.25, seeds[1])
    x = tf.image.stateless_random_saturation(x, 0.75, 1.25, seeds[2])
  else:
    x = tf.image.random_brightness(x, 0.125)
    x = tf.image.random_contrast(x, 0.75, 1.25)
    x = tf.image.random_saturation(x, 0.75, 1.25)
  return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def paste_classes(images, labels, classes: Sequence[int], probability: float,
                  ignore_label: int, seed=None):
  """Copy-paste of classes within a batch (as Ghiasi et al., CVPR 2021, for
  instances): each crop receives, with ``probability``, the pixels of
  ``classes`` of the batch's previous crop, image and label, where they lie
  (random crops and flips have already put them anywhere). The one-pixel
  ring around the pasted pixels takes the source image too and the ignore
  label: a thin object's blurred border, labelled as whatever stood behind
  it in its own image, is not taught as what stands behind it here.

  Args:
    images: float32 [b, h, w, 3].
    labels: int32 [b, h, w].
    classes: class ids to paste.
    probability: chance that a crop receives its neighbour's pixels.
    ignore_label: label of the ring around pasted pixels.
    seed: optional stateless seed, shape [2].

  Returns:
    (images, labels) of the same shapes; a batch of one is returned as is.
  """
  source_images = tf.roll(images, 1, axis=0)
  source_labels = tf.roll(labels, 1, axis=0)
  count = tf.shape(labels)[0]
  draw = (tf.random.stateless_uniform([count], seed) if seed is not None
          else tf.random.uniform([count]))
  chosen = tf.logical_and(draw < probability, count > 1)
  pasted = tf.reduce_any(
      tf.equal(source_labels[..., None], tf.constant(classes, labels.dtype)),
      axis=-1)
  pasted = tf.logical_and(pasted, chosen[:, None, None])
  grown = tf.nn.max_pool2d(tf.cast(pasted, tf.float32)[..., None], 3, 1,
                           "SAME")[..., 0] > 0
  images = tf.where(grown[..., None], source_images, images)
  labels = tf.where(pasted, source_labels,
                    tf.where(grown, tf.cast(ignore_label, labels.dtype), labels))
  return images, labels


def preprocess_train(image, label, *, crop_size: Sequence[int],
                     scale_range: Tuple[float, float], scale_step: float,
                     flip: bool, photometric_jitter: bool, ignore_label: int,
                     resize_range=(0, 0, 0), seed=None):
  """One training example: uint8 image/label -> float32 [-1, 1], int32 ids.

  Args:
    image: uint8 [h, w, 3].
    label: uint8 [h, w, 1] class ids.
    crop_size: (height, width) of the crop.
    scale_range: (min, max) random scale factors.
    scale_step: grid step of the scale (0: continuous).
    flip: random left-right flip.
    photometric_jitter: brightness/contrast/saturation jitter.
    ignore_label: label of padded pixels.
    resize_range: (min_size, max_size, factor) of ``resize_to_range``,
      applied first (the original's min/max_resize_value, resize_factor).
    seed: optional stateless seed, shape [2], for a deterministic pipeline.

  Returns:
    (image float32 [crop_h, crop_w, 3] in [-1, 1], label int32 [crop_h, crop_w]).
  """
  seeds = (tf.random.experimental.stateless_split(seed, 4)
           if seed is not None else [None] * 4)
  height, width = crop_size
  image, label = resize_to_range(image, label, *resize_range)
  scale = random_scale_factor(scale_range[0], scale_range[1], scale_step,
                              seeds[0])
  image, label = scale_image_and_label(image, label, scale)
  image, label = pad_to_size(image, label, height, width, ignore_label)
  image, label = random_crop(image, label, height, width, seeds[1])
  if flip:
    image, label = random_flip(image, label, seeds[2])
  if photometric_jitter:
    image = photometric(image, seeds[3])
  image = normalize(image)
  image.set_shape([height, width, 3])
  label = tf.cast(label[..., 0], tf.int32)
  label.set_shape([height, width])
  return image, label


def preprocess_eval(image, label, resize_range=(0, 0, 0)):
  """A whole evaluation image: resized to range (``resize_to_range``, as
  the original evaluates), normalized, label as int32 [h, w]."""
  image, label = resize_to_range(image, label, *resize_range)
  return normalize(image), tf.cast(label[..., 0], tf.int32)
