"""Images to labels and probabilities: the one inference path.

Evaluation, the SavedModel, the frozen graph and ``deeplab.predict`` all
predict through this module, so they compute the same function:

1. Resize to range (``predict_labels`` only): the run's min/max resize value
   and resize factor (``augment.resize_to_range_size``), as the original's
   export resizes its input.
2. Pad: as the original's evaluation and export, the image is padded
   (bottom/right, with the mean pixel) up to the evaluation crop size
   (``eval_crop_size``, 513x513 for VOC), so the image-pooling branch
   averages over the padded area as it did there; a dimension larger than
   the crop (or every dimension, without a crop size) is padded to the next
   size of the form ``output_stride * k + 1``, where the aligned-corner
   resizes line up exactly (``output_stride * k`` for a model whose
   ``align_corners`` is False).
3. Multi-scale and flip: the softmax probabilities of every scale (and of
   the flipped input) are averaged, as the original's
   ``predict_labels_multi_scale`` does; with scales (1.0,) and no flip it is
   plain inference. The result is sliced back to the (resized) image.
4. Back to the input size (``predict_labels`` only): labels by nearest
   neighbour, probabilities bilinearly.

Tiles (``tile_size`` > 0, ``config.eval.tile_size``): an image larger than
the tile in either dimension is predicted in sliding windows of
``tile_size`` x ``tile_size`` pixels, ``tile_size - tile_overlap`` pixels
apart rounded down to a multiple of the output stride (so each window's
feature grid falls on the whole image's), from the top left corner; the
windows of the last row and column are cut at the image's edge. Each
window goes through steps 2 and 3 as an image of its own, padded to the
tile (``crop_size=(tile_size, tile_size)``); its probabilities (after the
multi-scale and flip average) are summed where windows overlap and divided
by how many windows covered each pixel. Where only labels are asked for
(``predict_label_map``, ``predict_labels(..., probabilities=False)``:
evaluation, ``deeplab.predict``, the frozen graph, the SavedModel's labels)
the sum is kept for one row of windows at a time (``tiled_labels``: a band
of at most ``tile_size`` rows of the image's width); the rows no later
window touches are divided and turned into int32 labels, and the rows the
next row of windows overlaps are carried into its band. Memory is then the
input, the labels (4 bytes a pixel), one band of probabilities and one
tile's activations. Full-size probabilities (``predict_probabilities``,
``tiled_probabilities``) keep one float32 sum of the whole image
[b, h, w, classes] instead; both add the windows in the same order, so
their labels are equal. An image that fits in one tile is predicted whole,
as without tiles.

Every resize here maps pixels as the model's own do
(``ModelArgs.align_corners``: aligned corners, as the original, unless the
model says otherwise).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf

from deeplab import config as config_lib
from deeplab import kernels
from deeplab.data import augment
from deeplab.data import pipeline


def padded_size(size, output_stride: int, align_corners: bool = True):
  """Smallest ``output_stride * k + 1 >= size``; ``output_stride * k`` without
  aligned corners (works on ints and tensors)."""
  if not align_corners:
    return ((size + output_stride - 1) // output_stride) * output_stride
  return ((size - 1 + output_stride - 1) // output_stride) * output_stride + 1


def target_size(size, output_stride: int, crop: Optional[int] = None,
                align_corners: bool = True):
  """What a dimension of ``size`` is padded to: ``crop`` if it fits in it,
  else the next aligned size (``padded_size``; ints and tensors)."""
  aligned = padded_size(size, output_stride, align_corners)
  if crop is None:
    return aligned
  if isinstance(size, int):
    return crop if size <= crop else aligned
  return tf.where(size <= crop, crop, aligned)


def resize_bilinear(images, size, align_corners: bool):
  """``images`` [b, h, w, c] resized bilinearly to ``size`` [2] as the
  original DeepLab does (``half_pixel_centers=False``, corners aligned or
  not), which ``tf.image.resize`` cannot do."""
  return tf.raw_ops.ResizeBilinear(images=images, size=size,
                                   align_corners=align_corners,
                                   half_pixel_centers=False)


def _align_corners(model, align_corners: Optional[bool]) -> bool:
  """``align_corners`` if given, else the model's (True for a callable
  without ``ModelArgs``)."""
  if align_corners is not None:
    return align_corners
  args = getattr(model, "args", None)
  return getattr(args, "align_corners", True)


def scale_dimension(size, scale: float, align_corners: bool = True):
  """The original's ``scale_dimension``: ``(size - 1) * scale + 1``, so an
  aligned size (``output_stride * k + 1``) keeps its corner-aligned grid;
  ``size * scale`` without aligned corners."""
  if not align_corners:
    return tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
  return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


def predict_probabilities(model, images, scales: Sequence[float] = (1.0,),
                          flip: bool = False, output_stride: Optional[int] = None,
                          crop_size: Optional[Sequence[int]] = None,
                          align_corners: Optional[bool] = None,
                          tile_size: int = 0, tile_overlap: int = 0):
  """Class probabilities [b, h, w, c] of images [b, h, w, 3] in [-1, 1].

  The images are padded (``target_size``), each scale resizes the padded
  images to ``scale_dimension`` of the padded size, the logits go back to
  the padded size, their softmax is averaged, and the result is sliced
  back to the images: the original's ``predict_labels_multi_scale`` on its
  padded evaluation crop. With ``tile_size``, an image larger than the tile
  is predicted so in overlapping tiles (``tiled_probabilities``).

  Args:
    model: a ``DeepLab`` (or any callable ``model(images, training=False)``
      returning logits at the input size).
    images: float32 batch.
    scales: input scales whose probabilities are averaged.
    flip: also average the left-right flipped input.
    output_stride: padding alignment (default: the model's).
    crop_size: (height, width) images are padded to with the mean pixel
      (the original's ``eval_crop_size``); None pads to the alignment only.
    align_corners: mapping of the resizes and of the padding's alignment
      (default: the model's ``ModelArgs.align_corners``).
    tile_size: side of the square tiles in pixels (of the form
      ``output_stride * k + 1``, ``output_stride * k`` without aligned
      corners); 0: the whole image at once.
    tile_overlap: pixels neighbouring tiles share at least (their step is
      ``tile_size - tile_overlap`` rounded down to a multiple of the output
      stride), in [0, tile_size - output_stride].
  """
  output_stride = output_stride or model.args.output_stride
  align_corners = _align_corners(model, align_corners)
  if tile_size:
    return tiled_probabilities(model, images, tile_size, tile_overlap, scales,
                               flip, output_stride, crop_size, align_corners)
  return _whole_probabilities(model, images, scales, flip, output_stride,
                              crop_size, align_corners)


def _whole_probabilities(model, images, scales, flip, output_stride: int,
                         crop_size, align_corners: bool):
  """``predict_probabilities`` of whole images."""
  crop_h, crop_w = tuple(crop_size) if crop_size else (None, None)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  padded_h = target_size(height, output_stride, crop_h, align_corners)
  padded_w = target_size(width, output_stride, crop_w, align_corners)
  # 0 after normalization is the mean pixel.
  padded = tf.pad(images, [[0, 0], [0, padded_h - height],
                           [0, padded_w - width], [0, 0]])
  total = 0.0
  count = 0
  for scale in scales:
    if scale == 1.0:
      scaled = padded
    else:
      scaled = resize_bilinear(padded, tf.maximum(scale_dimension(
          tf.stack([padded_h, padded_w]), scale, align_corners), 1),
                               align_corners)
    for flipped in ((False, True) if flip else (False,)):
      inputs = tf.reverse(scaled, [2]) if flipped else scaled
      logits = tf.cast(model(inputs, training=False), tf.float32)
      if flipped:
        logits = tf.reverse(logits, [2])
      if scale != 1.0:
        logits = resize_bilinear(logits, tf.stack([padded_h, padded_w]), align_corners)
      total += kernels.softmax(logits)
      count += 1
  return (total / count)[:, :height, :width, :]


def tile_step(tile_size: int, tile_overlap: int, output_stride: int) -> int:
  """Pixels between neighbouring windows: ``tile_size - tile_overlap``
  rounded down to a multiple of ``output_stride``, so every window's
  feature grid falls on the whole image's (a window shifted by a fraction
  of the stride would sample its features at other pixels)."""
  return (tile_size - tile_overlap) // output_stride * output_stride


def tile_starts(size, tile_size: int, step: int):
  """First pixels of the windows along a dimension of ``size`` pixels
  (int32 vector): 0, ``step``, 2 ``step``... up to the first window that
  reaches the edge (it is cut there)."""
  count = (tf.maximum(size - tile_size, 0) + step - 1) // step + 1
  return tf.range(count) * step


def _coverage(size, starts, extent):
  """How many windows of ``extent`` pixels starting at ``starts`` cover each
  of ``size`` pixels (float32 [size])."""
  pixels = tf.range(size)[None, :]
  inside = tf.logical_and(pixels >= starts[:, None],
                          pixels < starts[:, None] + extent)
  return tf.reduce_sum(tf.cast(inside, tf.float32), 0)


def _num_classes(model) -> int:
  args = getattr(model, "args", None)
  if getattr(args, "num_classes", None):
    return args.num_classes
  shape = getattr(model, "output_shape", None)
  if shape and shape[-1]:
    return shape[-1]
  raise ValueError("tiles need the model's number of classes: give a model "
                   "with args.num_classes or a Keras output_shape")


def _check_tiles(tile_size: int, tile_overlap: int, output_stride: int):
  if tile_size < output_stride or not 0 <= tile_overlap <= tile_size - output_stride:
    raise ValueError(
        f"tiles must have tile_size >= output_stride ({output_stride}) and "
        f"tile_overlap in [0, tile_size - output_stride], got "
        f"tile_size={tile_size!r}, tile_overlap={tile_overlap!r}")


def _add_window(model, images, total, y, x, top, tile_size: int, scales,
                flip, output_stride: int, align_corners: bool):
  """``total`` (a sum of the image's rows from ``top`` on) plus the
  probabilities of the window at (``y``, ``x``), cut at the image's edge."""
  shape = tf.shape(images)
  tile_h = tf.minimum(tile_size, shape[1] - y)
  tile_w = tf.minimum(tile_size, shape[2] - x)
  window = tf.slice(images, tf.stack([0, y, x, 0]),
                    tf.stack([-1, tile_h, tile_w, -1]))
  # The window is an image of its own, padded to the tile.
  probabilities = _whole_probabilities(
      model, window, scales, flip, output_stride, (tile_size, tile_size),
      align_corners)
  where = tf.stack(tf.meshgrid(tf.range(shape[0]),
                               tf.range(y - top, y - top + tile_h),
                               tf.range(x, x + tile_w), indexing="ij"), -1)
  return tf.tensor_scatter_nd_add(total, where, probabilities)


def _tiled(model, images, tile_size: int, tile_overlap: int, scales, flip,
           output_stride: Optional[int], crop_size, align_corners, tiles,
           from_whole=lambda probabilities: probabilities):
  """``from_whole`` of the probabilities of images that fit in a tile, else
  ``tiles(step, output_stride, align_corners)``."""
  output_stride = output_stride or model.args.output_stride
  _check_tiles(tile_size, tile_overlap, output_stride)
  align_corners = _align_corners(model, align_corners)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]

  def whole():
    return from_whole(_whole_probabilities(
        model, images, scales, flip, output_stride, crop_size, align_corners))

  def tiled():
    return tiles(tile_step(tile_size, tile_overlap, output_stride),
                 output_stride, align_corners)

  fits = tf.logical_and(height <= tile_size, width <= tile_size)
  static = tf.get_static_value(fits)
  if static is not None:
    return whole() if static else tiled()
  return tf.cond(fits, whole, tiled)


def tiled_probabilities(model, images, tile_size: int, tile_overlap: int,
                        scales: Sequence[float] = (1.0,), flip: bool = False,
                        output_stride: Optional[int] = None,
                        crop_size: Optional[Sequence[int]] = None,
                        align_corners: Optional[bool] = None):
  """``predict_probabilities`` in overlapping tiles (the module docstring).

  An image at most ``tile_size`` in both dimensions is predicted whole (with
  ``crop_size``), so tiles change nothing where one covers the image. A
  larger one is cut into windows (``tile_starts`` along each dimension,
  ``tile_step`` apart), each predicted as an image padded to
  ``(tile_size, tile_size)``; a
  ``tf.while_loop`` over the windows adds their probabilities into one
  float32 sum [b, h, w, c] (``tensor_scatter_nd_add``), which is divided
  by the h x w count of windows over each pixel. The graph takes images of
  any size; memory is the sum, the count map and one tile's activations
  (``tiled_labels`` keeps one band of the sum where only labels are needed).

  Args:
    model: a ``DeepLab`` (or a callable with ``args.num_classes`` or a
      Keras ``output_shape``).
    images: float32 batch [b, h, w, 3] in [-1, 1].
    tile_size: side of the square windows in pixels.
    tile_overlap: pixels neighbouring windows share at least, in
      [0, tile_size - output_stride].
    scales, flip, output_stride, crop_size, align_corners: as
      ``predict_probabilities``; scales and flip apply to each tile.

  Raises:
    ValueError: tile_size < output_stride or tile_overlap outside
      [0, tile_size - output_stride].
  """
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]

  def tiles(step, output_stride, align_corners):
    rows = tile_starts(height, tile_size, step)
    cols = tile_starts(width, tile_size, step)
    columns = tf.size(cols)

    def add_tile(i, total):
      return i + 1, _add_window(model, images, total, rows[i // columns],
                                cols[i % columns], 0, tile_size, scales, flip,
                                output_stride, align_corners)

    total = tf.zeros(tf.stack([batch, height, width, _num_classes(model)]))
    _, total = tf.while_loop(lambda i, _: i < tf.size(rows) * columns,
                             add_tile, (tf.constant(0), total))
    count = (_coverage(height, rows, tile_size)[:, None] *
             _coverage(width, cols, tile_size)[None, :])
    return total / count[None, :, :, None]

  return _tiled(model, images, tile_size, tile_overlap, scales, flip,
                output_stride, crop_size, align_corners, tiles)


def tiled_labels(model, images, tile_size: int, tile_overlap: int,
                 scales: Sequence[float] = (1.0,), flip: bool = False,
                 output_stride: Optional[int] = None,
                 crop_size: Optional[Sequence[int]] = None,
                 align_corners: Optional[bool] = None):
  """int32 labels [b, h, w] of ``tiled_probabilities``, one row of windows
  at a time.

  The windows and their order are ``tiled_probabilities``'s, so the labels
  are its argmax exactly; but the probabilities are summed into one band
  [b, <= tile_size, w, c] per row of windows. When a row is done, the band's
  rows above the next row's windows are final (divided by their count and
  argmaxed into a block of labels); the rest is carried into the next band.
  Memory is the input, the labels, one band and one tile's activations.
  Arguments and errors as ``tiled_probabilities``.
  """
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]

  def tiles(step, output_stride, align_corners):
    rows = tile_starts(height, tile_size, step)
    cols = tile_starts(width, tile_size, step)
    row_count = _coverage(height, rows, tile_size)
    col_count = _coverage(width, cols, tile_size)
    ends = tf.concat([rows[1:], [height]], 0)
    classes = _num_classes(model)

    def band(r, carry, blocks):
      top = rows[r]
      band_h = tf.minimum(tile_size, height - top)
      total = tf.pad(carry, [[0, 0], [0, band_h - tf.shape(carry)[1]],
                             [0, 0], [0, 0]])

      def add_tile(c, total):
        return c + 1, _add_window(model, images, total, top, cols[c], top,
                                  tile_size, scales, flip, output_stride,
                                  align_corners)

      _, total = tf.while_loop(lambda c, _: c < tf.size(cols), add_tile,
                               (tf.constant(0), total))
      final = ends[r] - top
      count = row_count[top:ends[r], None] * col_count[None, :]
      labels = tf.argmax(total[:, :final] / count[None, :, :, None], -1,
                         output_type=tf.int32)
      return (r + 1, total[:, final:],
              blocks.write(r, tf.transpose(labels, [1, 0, 2])))

    carry = tf.zeros(tf.stack([batch, 0, width, classes]))
    blocks = tf.TensorArray(tf.int32, size=tf.size(rows), infer_shape=False,
                            element_shape=tf.TensorShape([None, None, None]))
    _, _, blocks = tf.while_loop(
        lambda r, *_: r < tf.size(rows), band, (tf.constant(0), carry, blocks),
        shape_invariants=(tf.TensorShape([]),
                          tf.TensorShape([None, None, None, classes]),
                          tf.TensorShape(None)))
    return tf.transpose(blocks.concat(), [1, 0, 2])

  return _tiled(model, images, tile_size, tile_overlap, scales, flip,
                output_stride, crop_size, align_corners, tiles,
                lambda probabilities: tf.argmax(probabilities, -1,
                                                output_type=tf.int32))


def predict_label_map(model, images, scales: Sequence[float] = (1.0,),
                      flip: bool = False, output_stride: Optional[int] = None,
                      crop_size: Optional[Sequence[int]] = None,
                      align_corners: Optional[bool] = None,
                      tile_size: int = 0, tile_overlap: int = 0):
  """int32 labels [b, h, w]: the argmax of ``predict_probabilities`` (same
  arguments); with ``tile_size``, without the full-size probabilities
  (``tiled_labels``)."""
  if tile_size:
    return tiled_labels(model, images, tile_size, tile_overlap, scales, flip,
                        output_stride, crop_size, align_corners)
  return tf.argmax(predict_probabilities(
      model, images, scales, flip, output_stride, crop_size, align_corners),
                   -1, output_type=tf.int32)


def predict_labels(model, images, scales: Sequence[float] = (1.0,),
                   flip: bool = False,
                   crop_size: Optional[Sequence[int]] = None,
                   resize_range: Sequence[float] = (0, 0, 0),
                   output_stride: Optional[int] = None,
                   align_corners: Optional[bool] = None,
                   tile_size: int = 0, tile_overlap: int = 0,
                   probabilities: bool = True):
  """What every export and ``deeplab.predict`` compute: (labels int32
  [b, h, w], probabilities float32 [b, h, w, c]) of RGB pixels [b, h, w, 3]
  in [0, 255].

  As the original's export: the images are first resized to range
  (``augment.resize_to_range``: the run's min/max resize value and resize
  factor, if set), then padded and predicted as evaluation does
  (``predict_probabilities``); the labels come back to the input size by
  nearest neighbour (probabilities bilinearly). Every resize maps pixels by
  ``align_corners`` (default: the model's ``ModelArgs.align_corners``).
  With ``tile_size``, an image larger than the tile (after the resize to
  range) is predicted in tiles of that size sharing ``tile_overlap``
  pixels (``tiled_probabilities``). With ``probabilities=False`` the
  probabilities are None and the labels come from ``predict_label_map``
  (in tiles: one band of probabilities at a time, the same labels).
  """
  align_corners = _align_corners(model, align_corners)
  images = tf.cast(images, tf.float32)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  resized = bool(resize_range[0] or resize_range[1])
  if resized:
    size = augment.resize_to_range_size(height, width, *resize_range)
    images = resize_bilinear(images, size, align_corners)
  options = dict(scales=scales, flip=flip, output_stride=output_stride,
                 crop_size=crop_size, align_corners=align_corners,
                 tile_size=tile_size, tile_overlap=tile_overlap)
  if probabilities:
    probabilities = predict_probabilities(model, augment.normalize(images),
                                          **options)
    labels = tf.argmax(probabilities, -1, output_type=tf.int32)
  else:
    probabilities = None
    labels = predict_label_map(model, augment.normalize(images), **options)
  if resized:
    labels = tf.raw_ops.ResizeNearestNeighbor(
        images=labels[..., None], size=tf.stack([height, width]),
        align_corners=align_corners)[..., 0]
    if probabilities is not None:
      probabilities = resize_bilinear(probabilities, tf.stack([height, width]),
                                      align_corners)
  return labels, probabilities


def options_from_config(config) -> Dict:
  """The ``predict_labels`` keyword arguments a run's config sets: its eval
  ``scales`` and ``flip``, evaluation ``crop_size``, ``resize_range`` and
  tiles (``tile_options``; ``export.savedmodel.export_saved_model`` and
  ``export.frozen_graph.export_frozen_graph`` take the same ones)."""
  return dict(scales=tuple(config.eval.scales), flip=config.eval.flip,
              crop_size=config_lib.eval_crop_size(config),
              resize_range=pipeline.resize_range(config),
              **tile_options(config))


def tile_options(config) -> Dict:
  """``tile_size`` and ``tile_overlap`` of ``config.eval`` (0, 0: whole
  images), as ``predict_probabilities`` and ``predict_labels`` take them."""
  if not config.eval.tile_size:
    return dict(tile_size=0, tile_overlap=0)
  return dict(tile_size=config.eval.tile_size,
              tile_overlap=config.eval.tile_overlap)


def with_output_stride(model, output_stride: int):
  """The same weights at another output stride (ASPP rates scaled along)."""
  args = model.args
  if output_stride == args.output_stride:
    return model
  factor = args.output_stride / output_stride
  rebuilt = type(model)(args.replace(
      output_stride=output_stride,
      atrous_rates=tuple(int(round(r * factor)) for r in args.atrous_rates)))
  rebuilt.set_weights(model.get_weights())
  return rebuilt
