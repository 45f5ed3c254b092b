"""The experiment config tree: defaults, and validation that names the key.

Every experiment in ``configs/`` starts from ``base_config()`` and changes
fields; the tree is locked, so a misspelt key (in a config file or on the
command line, ``--config.train.batch_sise=8``) is an error, and ml_collections'
type safety rejects a value of the wrong type. ``validate`` then checks the
values against the rules of the model and the data.

One section per concern, each a key of ``SECTIONS``: what is segmented
(``dataset``), the network (``model``), the input pipeline (``data``), the
training loop (``train``), the optimizer, the learning-rate ``schedule``,
the ``loss``, the weights a run starts from (``init``), ``checkpoint``
saving, the time ``budget``, the ``distribution`` strategy, ``eval`` and
``export``. Each section is defined by a function that sets its fields
(each with its meaning and unit), followed by its rule table
(``deeplab.rules``, the style ``ModelArgs`` validates in).

The model's fields (``config.model.*`` and ``config.dataset.num_classes``)
come from ``deeplab.model_args.ModelArgs``, which documents each of them
and holds their rules.

The dataset fields (``config.dataset.*``: class count, names, ignore label,
colormap) come from the records' ``dataset.json`` unless the config sets
them (``resolve_dataset``).
"""

from __future__ import annotations

import importlib.util
import os
import typing
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Tuple

from absl import logging
import ml_collections

from deeplab import rules
from deeplab import tasks
from deeplab.data import dataset_table
from deeplab.data import description as description_lib
from deeplab.model_args import ModelArgs

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
SCHEDULES = ("poly", "exponential")
WARMUP_TYPES = ("none", "linear")
OPTIMIZERS = ("sgd", "adamw")
# config.loss.class_weights computed from the records' pixel counts, and the
# power each median-frequency weight is raised to (0.5: its square root).
AUTO_CLASS_WEIGHTS = {"auto": 1.0, "auto_sqrt": 0.5}
# 4096 x 4096: a 12-megapixel photo, or eight 2048x1024 Cityscapes frames,
# in one request (bench/README.md measures a request's memory at it).
MAX_REQUEST_PIXELS = 4096 * 4096
# 8192 x 8192: the whole-image bound of a SavedModel exported with tiles
# (config.eval.tile_size), whose full-size probabilities, where exported,
# are 8192 x 8192 x classes x 4 bytes (5.3 GiB with 21 classes).
MAX_IMAGE_PIXELS = 8192 * 8192


def base_config() -> ml_collections.ConfigDict:
  """Returns the default config tree (PASCAL VOC, Xception-65, OS 16)."""
  config = ml_collections.ConfigDict()
  for section in SECTIONS.values():
    section.define(config)
  config.lock()
  return config


def _dataset(config) -> None:
  """What is segmented."""
  config.dataset = ml_collections.ConfigDict()
  # Name of the dataset (an entry of the dataset table, or a user dataset).
  config.dataset.name = "pascal_voc_seg"
  # Label value of pixels that are excluded from loss and metrics.
  config.dataset.ignore_label = 255
  # Class names of a user dataset, one per id; () takes the table's names
  # (or class_0, class_1, ... for a dataset not in the table).
  config.dataset.class_names = ()
  # RGB color per class id of a user dataset, for colored masks and
  # overlays; () takes the table's (or generated colors for a dataset not
  # in the table).
  config.dataset.colormap = ()


def _model(config) -> None:
  """The network: every ModelArgs field of an experiment (its docstrings
  say what each means), plus where its weights come from."""
  config.model = ml_collections.ConfigDict()
  for field in ModelArgs.config_fields():
    section, name = ModelArgs.config_key(field.name).split(".")
    config[section][name] = _typed_default(field)
  # Path of pretrained backbone weights: an original DeepLab/slim TF1
  # checkpoint prefix, a .keras file of ours, or a run folder of ours (its
  # latest checkpoint; a classification run pretrains a backbone); ''
  # starts from scratch.
  config.model.backbone_weights = ""


def _data(config) -> None:
  """The input pipeline."""
  config.data = ml_collections.ConfigDict()
  # Glob of training TFRecord shards (original DeepLab record format; for
  # classification the ImageNet layout: image/encoded, image/class/label).
  config.data.train_pattern = ""
  # Glob of evaluation TFRecord shards.
  config.data.eval_pattern = ""
  # Training crop (height, width) in pixels; for segmentation each must be
  # output_stride * k + 1 (513 = 16 * 32 + 1), like the original's crops
  # (output_stride * k, 512, where config.model.align_corners is False).
  # Classification: the network's input size in training and evaluation
  # (any size; 299x299 for the paper's ImageNet pretraining).
  config.data.crop_size = (513, 513)
  # Classification: added to each record's image/class/label. The widely
  # used ImageNet-to-TFRecord scripts write labels 1..1000 (0 is a
  # background class no image has), which the original's 1001-logit
  # ImageNet checkpoints keep: 0 (config.dataset.num_classes=1001). -1
  # makes them 0..999 for 1000 logits.
  config.data.label_offset = 0
  # Classification: fraction of the image's height and width kept by the
  # evaluation's central crop before the resize to crop_size (0.875, as
  # slim's inception_preprocessing); 1.0 keeps the whole image.
  config.data.central_crop = 0.875
  # Resize every image first (training and evaluation) so its shorter side
  # is this many pixels, unless its longer side would exceed
  # max_resize_value (the original's min_resize_value); 0: no resize.
  config.data.min_resize_value = 0
  # Bound in pixels of the longer side after that resize; 0: none.
  config.data.max_resize_value = 0
  # Resized sides become resize_factor * k + 1 pixels (16 for ADE20K); 0: any.
  config.data.resize_factor = 0
  # Smallest random scale of a training image (factor of its original size).
  config.data.min_scale = 0.5
  # Largest random scale of a training image.
  config.data.max_scale = 2.0
  # Step of the random scale grid (0.5, 0.75, ... 2.0); 0 draws continuously.
  config.data.scale_step = 0.25
  # Random left-right flip of training images.
  config.data.flip = True
  # Random brightness/contrast/saturation jitter (the original has none).
  config.data.photometric = False
  # Copy-paste within each training batch: the pixels of these class ids in
  # one crop are pasted, image and label, onto the next crop of the batch
  # (augment.paste_classes); () pastes nothing. For thin or rare classes.
  config.data.paste_classes = ()
  # Chance that a crop receives the pasted pixels of its neighbour.
  config.data.paste_probability = 0.5
  # Records shuffled together: each epoch's record stream is cut into
  # windows of this many records, each permuted (1: file order only).
  config.data.shuffle_buffer = 1000
  # Images per evaluation batch; > 1 pads images to a common size.
  config.data.eval_batch_size = 1
  # Same batches in the same order on every run (stateless seeded ops).
  config.data.deterministic = False
  # Seed of shuffling and augmentation (used by every run; exact repeats
  # need deterministic=True).
  config.data.seed = 0


def _data_rules(config) -> rules.Table:
  data = config.data
  if tasks.registration(config).stride_aligned_inputs:
    crop = _stride_aligned_size(config.model.output_stride,
                                config.model.align_corners, smallest=2,
                                words="(height, width) with each of the form")
  else:  # Global pooling takes any size.
    crop = rules.Rule(lambda c: len(c) == 2 and all(
        rules.is_int(x) and x >= 1 for x in c), "(height, width) in pixels")
  num_classes = config.dataset.num_classes  # The table's (validate).
  return {
      "crop_size": crop,
      "min_scale": rules.above(0),
      "max_scale": rules.Rule(lambda v: v >= data.min_scale,
                              f">= config.data.min_scale ({data.min_scale!r})"),
      "min_resize_value": rules.at_least(0),
      "max_resize_value": rules.at_least(0),
      "resize_factor": rules.at_least(0),
      "scale_step": rules.at_least(0),
      "eval_batch_size": rules.at_least(1),
      "central_crop": rules.in_interval(0, 1, "(]"),
      "shuffle_buffer": rules.at_least(1),
      "paste_classes": rules.Rule(
          lambda v: all(rules.is_int(c) and 0 <= c < num_classes for c in v),
          f"class ids in [0, {num_classes})"),
      "paste_probability": rules.in_interval(0, 1),
  }


def _stride_aligned_size(output_stride: int, align_corners: bool,
                         smallest: int, words: str) -> rules.Rule:
  """(height, width), each >= ``smallest`` and output_stride * k + 1 where
  the model aligns corners (config.model.align_corners), output_stride * k
  where it does not."""
  offset = 1 if align_corners else 0
  return rules.Rule(
      lambda c: len(c) == 2 and all(
          rules.is_int(x) and x >= smallest and
          (x - offset) % output_stride == 0 for x in c),
      f"{words} output_stride * k + 1 with config.model.align_corners=True, "
      f"output_stride * k with False (output_stride={output_stride}, "
      f"align_corners={align_corners}: e.g. {output_stride * 32 + offset})")


def _train(config) -> None:
  """The training loop."""
  config.train = ml_collections.ConfigDict()
  # Images per step (one weight update), summed over all replicas and
  # workers, and over the accumulation_steps micro-batches of a step.
  config.train.batch_size = 16
  # Micro-batches per step: each replica runs batch_size / replicas /
  # accumulation_steps images at a time (the memory a step needs) and sums
  # their gradients before one update, so batch_size images fit a device
  # holding fewer. The schedule, loss normalisation, weight decay, loss
  # scaling and checkpoints count updates. Batch norm normalises each
  # micro-batch on its own (docs/training.md).
  config.train.accumulation_steps = 1
  # Compile each replica's training step, and the evaluation step, with XLA
  # (usually faster on GPUs; TPUs always compile).
  config.train.jit_compile = False
  # Number of training steps: the end of the poly learning-rate schedule, or
  # with config.budget.max_minutes an upper bound on it.
  config.train.steps = 30000
  # Training steps per tf.function call (fewer host round trips).
  config.train.steps_per_loop = 10
  # Seed of the weight initialization (same seed: same initial weights).
  config.train.seed = 0
  # Batch norm uses batch statistics and updates its moving ones (False: it
  # runs on the moving statistics, as at inference, for small batches; gamma
  # and beta still train, as in the original). Training warns when batch
  # norm trains on fewer images than trainer.BATCH_NORM_MIN_IMAGES (12).
  config.train.fine_tune_batch_norm = True


def _train_rules(config) -> rules.Table:
  batch_size = config.train.batch_size
  return {"batch_size": rules.at_least(1), "steps": rules.at_least(1),
          "steps_per_loop": rules.at_least(1),
          "accumulation_steps": rules.Rule(
              lambda v: v >= 1 and batch_size % v == 0,
              f">= 1 and divide config.train.batch_size ({batch_size})")}


def _optimizer(config) -> None:
  """The update rule, and what it does to the gradients."""
  config.optimizer = ml_collections.ConfigDict()
  # One of OPTIMIZERS: 'sgd' (SGD with momentum, the paper's) or 'adamw'
  # (Keras' AdamW, for training from scratch).
  config.optimizer.name = "sgd"
  # SGD momentum.
  config.optimizer.momentum = 0.9
  # SGD: Nesterov momentum (the paper's ImageNet pretraining uses it).
  config.optimizer.nesterov = False
  # AdamW's decay rate of the gradient's running mean (Keras' default).
  config.optimizer.adam_beta1 = 0.9
  # AdamW's decay rate of the squared gradient's running mean.
  config.optimizer.adam_beta2 = 0.999
  # AdamW's epsilon, added to the root of that mean.
  config.optimizer.adam_epsilon = 1e-7
  # Weight decay of convolution kernels (not depthwise, bias or BN): for
  # 'sgd' the factor of the L2 loss (the paper's 4e-5), for 'adamw' the
  # decoupled decay per unit learning rate.
  config.optimizer.weight_decay = 4e-5
  # Clip the gradient of the global batch to this norm; 0: no clipping.
  config.optimizer.clip_global_norm = 0.0
  # Factor on the gradients of the last layers (twice it on their biases;
  # every other bias gets 2x), the original's last_layer_gradient_multiplier;
  # which layers: config.init.last_layers_contain_logits_only.
  config.optimizer.last_layer_gradient_multiplier = 1.0


def _optimizer_rules(config) -> rules.Table:
  del config
  return {"name": rules.one_of(OPTIMIZERS),
          "clip_global_norm": rules.at_least(0, "(0: no clipping)"),
          "last_layer_gradient_multiplier": rules.at_least(0)}


def _schedule(config) -> None:
  """The learning rate, step by step."""
  config.schedule = ml_collections.ConfigDict()
  # One of SCHEDULES: 'poly' (the original DeepLab recipe's) or
  # 'exponential' (base_learning_rate * decay_rate ** floor(epoch /
  # decay_epochs), staircase, as slim's train_image_classifier for ImageNet
  # pretraining).
  config.schedule.name = "poly"
  # Peak learning rate of the schedule (0.007 in the original recipe).
  config.schedule.base_learning_rate = 0.007
  # 'poly': learning rate reached at the last step.
  config.schedule.end_learning_rate = 0.0
  # 'poly': exponent of the decay (1 - step / steps) ** power.
  config.schedule.learning_power = 0.9
  # 'poly': steps of the original's slow start (slow_start_step); 0
  # disables it.
  config.schedule.warmup_steps = 0
  # 'poly': learning rate of the slow start (slow_start_learning_rate).
  config.schedule.warmup_learning_rate = 1e-4
  # 'poly': how the slow start runs (slow_start_burnin_type), one of
  # WARMUP_TYPES: 'none' holds warmup_learning_rate, 'linear' ramps from it
  # to base_learning_rate.
  config.schedule.warmup_type = "none"
  # 'exponential': factor on the learning rate every decay_epochs (slim's
  # learning_rate_decay_factor default, 0.94).
  config.schedule.decay_rate = 0.94
  # 'exponential': epochs between decays (slim's num_epochs_per_decay
  # default, 2.0).
  config.schedule.decay_epochs = 2.0
  # 'exponential': training records in one epoch (its decay interval is
  # decay_epochs * epoch_examples / config.train.batch_size steps, rounded
  # down, as slim's); required by that schedule.
  config.schedule.epoch_examples = 0


def _schedule_rules(config) -> rules.Table:
  table = {"name": rules.one_of(SCHEDULES),
           "base_learning_rate": rules.above(0),
           "warmup_type": rules.one_of(WARMUP_TYPES, "'none' or 'linear'")}
  if config.schedule.name == "exponential":
    table.update(
        decay_rate=rules.in_interval(0, 1, "(]"),
        decay_epochs=rules.above(0),
        epoch_examples=rules.Rule(
            lambda v: v >= 1, "the number of training records (>= 1) for "
            "config.schedule.name='exponential' (it decays by epochs)"))
  return table


def _loss(config) -> None:
  """The segmentation loss: weighted, mined pixel cross-entropy, and the
  Lovasz-softmax loss beside it."""
  config.loss = ml_collections.ConfigDict()
  # Loss weight per class id, () for none (deeplab-inspect prints them);
  # 'auto': median-frequency weights from the pixel counts of the training
  # records' dataset.json, 'auto_sqrt': their square roots (rare classes
  # over-predicted less; the CamVid recipes' choice). Training replaces
  # either with the weights it computed (W/config.json).
  config.loss.class_weights = ml_collections.FieldReference((), field_type=object)
  # Fraction of the hardest pixels of the batch kept in the loss (1.0: all
  # pixels).
  config.loss.top_k_percent_pixels = 1.0
  # Steps over which the kept fraction ramps down from 1.0 to
  # top_k_percent_pixels (the original's hard_example_mining_step); 0: from
  # the first step.
  config.loss.hard_example_mining_step = 0
  # Weight of the Lovasz-softmax loss (a surrogate of 1 - IoU per class,
  # mean over the classes in the batch) added to the cross-entropy; 0: none.
  config.loss.lovasz_weight = 0.0
  # The Lovasz loss sees every n-th row and column of the crop (one sort
  # per class over its pixels; its cost per stride:
  # docs/notes/camvid_recipe_decisions.md).
  config.loss.lovasz_pixel_stride = 1


def _loss_rules(config) -> rules.Table:
  num_classes = config.dataset.num_classes
  return {
      "class_weights": rules.Rule(
          lambda v: v in AUTO_CLASS_WEIGHTS if isinstance(v, str) else (
              not v or len(v) == num_classes),
          f"() or one weight per class (config.dataset.num_classes="
          f"{num_classes}) or one of {', '.join(map(repr, AUTO_CLASS_WEIGHTS))}"),
      "top_k_percent_pixels": rules.in_interval(0, 1, "(]"),
      "hard_example_mining_step": rules.at_least(0),
      "lovasz_weight": rules.at_least(0),
      "lovasz_pixel_stride": rules.at_least(1),
  }


def _init(config) -> None:
  """The weights a new run starts from (a resumed run reads its own
  checkpoint); the backbone's alone: config.model.backbone_weights."""
  config.init = ml_collections.ConfigDict()
  # Weights to start from: .keras file, original TF1 checkpoint prefix, or a
  # workdir of ours; '' starts from config.model.backbone_weights or scratch.
  config.init.checkpoint = ""
  # Load the last layers from the checkpoint (False: they start fresh, e.g.
  # for a new class count; which layers: see the next field).
  config.init.initialize_last_layer = True
  # The last layers (here, and for config.optimizer's
  # last_layer_gradient_multiplier) are the logits alone; False (the
  # original's default): logits, image pooling, ASPP, concat projection and
  # decoder.
  config.init.last_layers_contain_logits_only = False


def _checkpoint(config) -> None:
  """Checkpoints of the run, in workdir/checkpoints."""
  config.checkpoint = ml_collections.ConfigDict()
  # Save a checkpoint every this many steps.
  config.checkpoint.every = 500
  # Checkpoints kept in workdir/checkpoints.
  config.checkpoint.keep = 5


def _checkpoint_rules(config) -> rules.Table:
  del config
  return {"every": rules.at_least(1), "keep": rules.at_least(1)}


def _budget(config) -> None:
  """The time a run may take."""
  config.budget = ml_collections.ConfigDict()
  # Minutes of training for the whole run, resumes included: the learning
  # rate schedule is fitted to them (its horizon follows the measured step
  # time) and training stops, saving first, when they are spent; 0: no limit.
  config.budget.max_minutes = 0.0


def _budget_rules(config) -> rules.Table:
  del config
  return {"max_minutes": rules.at_least(0, "(0: no limit)")}


def _distribution(config) -> None:
  """Where training runs: devices, workers, TPUs."""
  config.distribution = ml_collections.ConfigDict()
  # tf.distribute strategy: one of STRATEGIES (multi_worker reads TF_CONFIG).
  config.distribution.strategy = "default"
  # TPU for strategy 'tpu': 'local' is the TPU attached to this VM (a
  # single-host TPU VM); a pod slice or a remote TPU takes its name (as
  # `gcloud compute tpus` lists it) or a grpc://host:port address.
  config.distribution.tpu = "local"


def _distribution_rules(config) -> rules.Table:
  table = {"strategy": rules.one_of(STRATEGIES)}
  if config.distribution.strategy == "tpu":
    table["tpu"] = rules.Rule(
        bool, "the TPU for config.distribution.strategy='tpu': 'local' on a "
        "TPU VM, the TPU's name for a pod slice or a remote TPU, or a "
        "grpc://host:port address")
  return table


def _eval(config) -> None:
  """Evaluation."""
  config.eval = ml_collections.ConfigDict()
  # Input scales whose softmax outputs are averaged, e.g. (0.5, 0.75, 1.0,
  # 1.25, 1.5, 1.75) for the paper's multi-scale figures.
  config.eval.scales = (1.0,)
  # Also average the left-right flipped input.
  config.eval.flip = False
  # (height, width) in pixels every evaluated or exported image is padded to
  # (bottom/right, mean pixel) before the network, as the original's
  # eval_crop_size; each of the form output_stride * k + 1 (output_stride * k
  # where config.model.align_corners is False). An image larger than it is
  # padded to the next size of that form instead, so (1, 1) pads every image
  # that way only. () takes the dataset table's value
  # (513x513 VOC and ADE20K, 1025x2049 Cityscapes; none for other datasets).
  config.eval.crop_size = ()
  # Side in pixels of the square tiles an image larger than it is predicted
  # in (evaluation, deeplab-predict and the SavedModel): each tile (after
  # multi-scale and flip) gives softmax probabilities, averaged where tiles
  # overlap, so the network's memory is bounded by the tile's. Of the form
  # output_stride * k + 1 (output_stride * k where config.model.align_corners
  # is False), e.g. 513. 0: whole images.
  config.eval.tile_size = 0
  # Pixels neighbouring tiles share at least (with tile_size > 0), in
  # [0, tile_size - output_stride]: windows are tile_size - tile_overlap
  # pixels apart, rounded down to a multiple of the output stride (so their
  # feature grids fall on the whole image's).
  config.eval.tile_overlap = 128
  # Eval images shown with predictions in TensorBoard.
  config.eval.num_summary_images = 3


def _eval_rules(config) -> rules.Table:
  table = {"scales": rules.Rule(lambda s: s and all(x > 0 for x in s),
                                "positive")}
  if tasks.registration(config).stride_aligned_inputs:
    aligned = _stride_aligned_size(
        config.model.output_stride, config.model.align_corners, smallest=1,
        words="() or (height, width) with each of the form")
    table["crop_size"] = rules.Rule(lambda c: not c or aligned.holds(c),
                                    aligned.words)
    tile = _stride_aligned_size(
        config.model.output_stride, config.model.align_corners,
        smallest=config.model.output_stride, words="0 (whole images) or")
    table["tile_size"] = rules.Rule(
        lambda t: t == 0 or tile.holds((t, t)),
        tile.words.replace(" with config", " (k >= 1) with config", 1))
    if config.eval.tile_size:
      most = config.eval.tile_size - config.model.output_stride
      table["tile_overlap"] = rules.Rule(
          lambda v: rules.is_int(v) and 0 <= v <= most,
          f"in [0, config.eval.tile_size - config.model.output_stride] = "
          f"[0, {most}] pixels")
  else:  # Global pooling: whole images.
    table["tile_size"] = rules.one_of((0,), "0 (tiles are for segmentation)")
  return table


def _export(config) -> None:
  """The exported SavedModel (export.py; the eval section's scales, flip
  and crop size are baked in too)."""
  config.export = ml_collections.ConfigDict()
  # The most pixels (batch x height x width) one request may hold; more is
  # an InvalidArgument error naming this limit, so a huge image cannot
  # exhaust the server's memory. Recorded in the SavedModel's metadata.
  config.export.max_request_pixels = MAX_REQUEST_PIXELS
  # With tiles (config.eval.tile_size > 0), max_request_pixels bounds one
  # tile of a request (batch x min(tile, height) x min(tile, width)) and
  # this bounds the whole request (batch x height x width): the image and
  # its outputs (labels; full-size probabilities where exported) grow with
  # it. Recorded in the SavedModel's metadata; unused without tiles.
  config.export.max_image_pixels = MAX_IMAGE_PIXELS
  # With tiles, whether the SavedModel also outputs the full-size float32
  # probabilities (one buffer of height x width x classes per image); without
  # them its tiled path keeps one band of tiles at a time and outputs labels
  # only. Without tiles both outputs are always there.
  config.export.tile_probabilities = False


def _export_rules(config) -> rules.Table:
  del config
  return {"max_request_pixels": rules.at_least(1),
          "max_image_pixels": rules.at_least(1)}


class Section(NamedTuple):
  """A section of the config tree: ``define(config)`` adds it with its
  defaults; ``rule_table(config)`` is its rule table (a function of the
  whole tree, for rules that depend on other fields), None for none."""
  define: Callable[[ml_collections.ConfigDict], None]
  rule_table: Optional[Callable[[ml_collections.ConfigDict], rules.Table]] = None


# The config tree's sections, in the order they are defined and validated.
# The model's rules (and dataset.num_classes') are ModelArgs.rule_table; the
# dataset is checked against the dataset table.
SECTIONS = {
    "dataset": Section(_dataset),
    "model": Section(_model),
    "data": Section(_data, _data_rules),
    "train": Section(_train, _train_rules),
    "optimizer": Section(_optimizer, _optimizer_rules),
    "schedule": Section(_schedule, _schedule_rules),
    "loss": Section(_loss, _loss_rules),
    "init": Section(_init),
    "checkpoint": Section(_checkpoint, _checkpoint_rules),
    "budget": Section(_budget, _budget_rules),
    "distribution": Section(_distribution, _distribution_rules),
    "eval": Section(_eval, _eval_rules),
    "export": Section(_export, _export_rules),
}


def get_config() -> ml_collections.ConfigDict:
  """The defaults, for ``--config`` flags whose file is this one."""
  return base_config()


def eval_crop_size(config) -> Optional[Tuple[int, int]]:
  """The (height, width) evaluation pads to: ``config.eval.crop_size``, or
  the dataset table's when that is (); None: stride-aligned padding only."""
  if tuple(config.eval.crop_size):
    return tuple(config.eval.crop_size)
  return dataset_table.from_config(config).eval_crop_size


# The config.dataset fields taken from the records' dataset.json
# (resolve_dataset). A field that holds its base_config() default is not set
# on purpose and takes the records' value; any other value is the config's
# choice and must agree with the records.
DATA_FIELDS = ("num_classes", "ignore_label", "class_names", "colormap")
# The record patterns whose dataset.json is read, first the one that decides.
RECORD_PATTERNS = ("train_pattern", "eval_pattern")


def _plain(value):
  """A config or JSON value comparable with a description's: sequences as
  tuples, nested ones too."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def _data_values(config, found: description_lib.Description) -> Dict[str, Any]:
  """``{field: value}`` the records give for ``DATA_FIELDS`` (those they
  say); labels shifted by ``config.data.label_offset`` (classification)."""
  names, num_classes = found.class_names, found.num_classes
  if config.data.label_offset:  # Read by classification records alone.
    offset = config.data.label_offset
    num_classes += offset
    names = (dataset_table.generic_names(offset) + names if offset > 0
             else names[-offset:])
  values = {"num_classes": num_classes, "class_names": tuple(names),
            "ignore_label": found.ignore_label, "colormap": found.colormap}
  if dataset_table.are_generic(names):
    del values["class_names"]  # Placeholders: any names the config gives.
  return {k: v for k, v in values.items() if v is not None}


def _descriptions(config) -> Tuple[list, list]:
  """``([(key, pattern, Description)], [patterns without one])`` of the
  config's record patterns; the descriptions must agree on the classes.

  Raises:
    ValueError: two descriptions that disagree, naming both files.
  """
  found, missing, by_folder = [], [], {}
  for key in RECORD_PATTERNS:
    pattern = config.data[key]
    if pattern:
      folder = description_lib.folder_of(pattern)
      if folder not in by_folder:
        by_folder[folder] = description_lib.read_folder(folder)
      described = by_folder[folder]
      if described is None:
        missing.append(pattern)
      else:
        found.append((key, pattern, described))
  for key, _, other in found[1:]:
    differences = found[0][2].disagreements(other)
    if differences:
      raise ValueError(
          f"the records of config.data.{found[0][0]} and config.data.{key} "
          f"describe other classes ({found[0][2].path} vs {other.path}: "
          f"{'; '.join(differences)})")
  return found, missing


def resolve_dataset(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with its dataset fields from the records' ``dataset.json``
  (``deeplab.data.description``, found beside ``config.data.train_pattern``
  or ``eval_pattern``) and ``config.loss.class_weights`` 'auto' or
  'auto_sqrt' computed from the training records' pixel counts.

  Each of ``DATA_FIELDS`` (and ``config.dataset.name``) holding its
  ``base_config()`` default takes the records' value; a value set on
  purpose must agree with them. Records without a description leave the
  config as it is, with a warning naming what is assumed.

  Args:
    config: a config tree (not changed).

  Returns:
    A copy of the config, resolved.

  Raises:
    ValueError: a field that contradicts the records, naming the field, its
      value, the records' value and their file; records of another task;
      'auto' class weights without a description.
  """
  config = from_dict(config.to_dict())
  found, missing = _descriptions(config)
  if not found and missing:
    d = config.dataset
    names = dataset_table.from_config(config).class_names
    logging.warning(
        "no %s beside %s; assuming num_classes=%d (%s), ignore_label=%d and "
        "class names %s from the config (config.dataset.*); records built by "
        "the deeplab-build-* tools describe themselves",
        description_lib.FILE, missing[0], d.num_classes, d.name, d.ignore_label,
        ", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))
  if found:
    _take_dataset_fields(config, *found[0])
  _resolve_class_weights(config, found)
  return config


def _take_dataset_fields(config, key: str, pattern: str,
                         found: description_lib.Description) -> None:
  """Sets or checks ``config.dataset`` against ``found`` (resolve_dataset)."""
  where = f"{found.path} (the records of config.data.{key}={pattern!r})"
  if tasks.REGISTERED.get(found.task) != tasks.registration(config):
    raise ValueError(
        f"config.model.task={ModelArgs.from_experiment(config).task!r} "
        f"contradicts the records: {where} holds {found.task} records")
  defaults = base_config().dataset
  d = config.dataset
  data = _data_values(config, found)
  if (found.ignore_label is None and d.num_classes != defaults.num_classes
      and d.num_classes > data["num_classes"]):
    # Classification records of some of the config's classes (class folders
    # of part of ImageNet): their labels are some of its logits.
    del data["num_classes"]
    data.pop("class_names", None)
  for field, value in data.items():
    ours = _plain(d[field])
    if ours == _plain(defaults[field]):
      set_field(config, f"dataset.{field}", value)
    elif ours != _plain(value):
      raise ValueError(
          f"config.dataset.{field}={d[field]!r} contradicts the records: "
          f"{where} says {field}={value!r}. Leave config.dataset.{field} "
          "unset to take the records' value, or train on records of these "
          "classes")
  if d.name == defaults.name:
    set_field(config, "dataset.name", found.name)
  elif d.name != found.name and d.name in dataset_table.DATASETS:
    table = dataset_table.DATASETS[d.name]
    if found.name in dataset_table.DATASETS or table.num_classes != d.num_classes:
      raise ValueError(
          f"config.dataset.name={d.name!r} ({table.num_classes} classes) "
          f"contradicts the records: {where} says name={found.name!r}, "
          f"num_classes={found.num_classes}. Leave config.dataset.name unset "
          "to take the records' dataset")


def _resolve_class_weights(config, found) -> None:
  """Replaces 'auto' / 'auto_sqrt' class weights by the weights of the
  training records' pixel counts."""
  weights = config.loss.class_weights
  if not isinstance(weights, str) or weights not in AUTO_CLASS_WEIGHTS:
    return  # validate() names a bad value.
  train = [(pattern, d) for key, pattern, d in found if key == "train_pattern"]
  if not train:
    raise ValueError(
        f"config.loss.class_weights={weights!r} computes weights from the "
        f"pixel counts in the {description_lib.FILE} beside "
        f"config.data.train_pattern={config.data.train_pattern!r}, and there "
        "is none: build the records with a deeplab-build-* tool, or give one "
        "weight per class (deeplab-inspect prints them)")
  pattern, described = train[0]
  set_field(config, "loss.class_weights", described.class_weights(
      pattern, AUTO_CLASS_WEIGHTS[weights]))


def leaves(config, prefix: str = "") -> Iterator[Tuple[str, Any]]:
  """``(dotted.path, value)`` of every field of a config tree."""
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from leaves(value, path + ".")
    else:
      yield path, value


def _typed_default(field):
  """A field's default; a None default of an ``Optional[float]`` field is a
  typed placeholder, so that ``--config.x=0.9`` can set it."""
  if field.default is not None:
    return field.default
  hint = typing.get_type_hints(ModelArgs)[field.name]
  (kind,) = [t for t in typing.get_args(hint) if t is not type(None)]
  return ml_collections.config_dict.placeholder(kind)


def from_dict(values: Dict[str, Any]) -> ml_collections.ConfigDict:
  """A locked, typed config tree holding ``values`` (e.g. a run's
  ``config.json``; JSON lists become the tuples the tree holds).

  Raises:
    ValueError: a key the config tree does not have, or a value of
      another type, naming the key.
  """
  config = base_config()
  for path, value in leaves(values):
    set_field(config, path, value)
  return config


def set_field(config: ml_collections.ConfigDict, path: str, value) -> None:
  """Sets ``config.<path>``; errors name the key."""
  *sections, name = path.split(".")
  node = config
  try:
    for section in sections:
      node = node[section]
    current = node[name]
  except (KeyError, AttributeError):
    raise ValueError(f"config.{path} is not a config field") from None
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(current, float) and isinstance(value, int) and \
      not isinstance(value, bool):
    value = float(value)
  try:
    node[name] = value
  except TypeError as e:
    raise ValueError(f"config.{path}={value!r}: {e}") from None


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks values a locked, typed config tree can still get wrong: the
  model's arguments (``ModelArgs``), the dataset against the dataset table,
  then every section's rule table.

  Raises:
    ValueError: naming the config key, the rule and the received value.
  """
  ModelArgs.from_experiment(config)  # ArgumentError names the key.
  dataset_table.from_config(config)  # Agreement with the dataset table.
  for name, section in SECTIONS.items():
    if section.rule_table:
      rules.check(config[name], section.rule_table(config), f"config.{name}")


def shipped_configs() -> Dict[str, str]:
  """``{name: path}`` of the experiment configs that ship with the package
  (``configs/`` of the repository, installed as ``deeplab_configs``)."""
  try:
    import deeplab_configs  # pylint: disable=g-import-not-at-top
    folder = os.path.dirname(deeplab_configs.__file__)
  except ImportError:  # A checkout used without installing the package.
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), "configs")
    if not os.path.isdir(folder):
      return {}
  return {name[:-3]: os.path.join(folder, name)
          for name in sorted(os.listdir(folder))
          if name.endswith(".py") and not name.startswith("_")}


def shipped_config(name: str) -> ml_collections.ConfigDict:
  """The ``get_config()`` of the shipped experiment config ``name``
  (``pascal_voc_xception65``), installed or in a checkout, as
  ``--config=NAME`` resolves it.

  Raises:
    ValueError: no shipped config has that name (the message lists them).
  """
  shipped = shipped_configs()
  if name not in shipped:
    raise ValueError(f"{name!r} is not a shipped config; shipped: "
                     f"{', '.join(shipped)}")
  spec = importlib.util.spec_from_file_location(
      f"deeplab_configs_{name}", shipped[name])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
