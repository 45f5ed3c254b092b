"""The experiment config tree: defaults, and validation that names the key.

Every experiment in ``configs/`` starts from ``base_config()`` and changes
fields; the tree is locked, so a misspelt key (in a config file or on the
command line, ``--config.train.batch_sise=8``) is an error, and ml_collections'
type safety rejects a value of the wrong type. ``validate`` then checks the
values against the rules of the model and the data.

The model's fields (``config.model.*`` and ``config.dataset.num_classes``)
come from ``deeplab.model_args.ModelArgs``, which documents each of them.
"""

from __future__ import annotations

import typing
from typing import Any, Dict, Iterator, Optional, Tuple

import ml_collections

from deeplab.data import registry
from deeplab.model_args import ModelArgs

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
SCHEDULES = ("poly", "exponential")
OPTIMIZERS = ("sgd", "adamw")
# 4096 x 4096: a 12-megapixel photo, or eight 2048x1024 Cityscapes frames,
# in one request (bench/README.md measures a request's memory at it).
MAX_REQUEST_PIXELS = 4096 * 4096


def base_config() -> ml_collections.ConfigDict:
  """Returns the default config tree (PASCAL VOC, Xception-65, OS 16)."""
  config = ml_collections.ConfigDict()

  # --- What is segmented. ---
  config.dataset = ml_collections.ConfigDict()
  # Name of the dataset (an entry of the dataset table, or a user dataset).
  config.dataset.name = "pascal_voc_seg"
  # Label value of pixels that are excluded from loss and metrics.
  config.dataset.ignore_label = 255
  # Class names of a user dataset, one per id; () takes the table's names
  # (or class_0, class_1, ... for a dataset not in the table).
  config.dataset.class_names = ()

  # --- The network: every ModelArgs field of an experiment (its
  # docstrings say what each means), plus where its weights come from. ---
  config.model = ml_collections.ConfigDict()
  for field in ModelArgs.config_fields():
    section, name = ModelArgs.config_key(field.name).split(".")
    config[section][name] = _typed_default(field)
  # Path of pretrained backbone weights: an original DeepLab/slim TF1
  # checkpoint prefix, a .keras file of ours, or a run folder of ours (its
  # latest checkpoint; a classification run pretrains a backbone); ''
  # starts from scratch.
  config.model.backbone_weights = ""

  # --- The input pipeline. ---
  config.data = ml_collections.ConfigDict()
  # Glob of training TFRecord shards (original DeepLab record format; for
  # classification the ImageNet layout: image/encoded, image/class/label).
  config.data.train_pattern = ""
  # Glob of evaluation TFRecord shards.
  config.data.eval_pattern = ""
  # Training crop (height, width) in pixels; for segmentation each must be
  # output_stride * k + 1 (513 = 16 * 32 + 1), like the original's crops.
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

  # --- Optimization. ---
  config.train = ml_collections.ConfigDict()
  # Images per step, summed over all replicas and workers.
  config.train.batch_size = 16
  # Number of training steps: the end of the poly learning-rate schedule, or
  # with max_minutes an upper bound on it.
  config.train.steps = 30000
  # Learning-rate schedule, one of SCHEDULES: 'poly' (the original DeepLab
  # recipe's) or 'exponential' (base_learning_rate * decay_rate **
  # floor(epoch / decay_epochs), staircase, as slim's
  # train_image_classifier for ImageNet pretraining).
  config.train.schedule = "poly"
  # Peak learning rate of the schedule (0.007 in the original recipe).
  config.train.base_learning_rate = 0.007
  # Learning rate reached at the last step.
  config.train.end_learning_rate = 0.0
  # Exponent of the poly decay (1 - step / steps) ** power.
  config.train.learning_power = 0.9
  # Steps of the original's slow start (slow_start_step); 0 disables it.
  config.train.warmup_steps = 0
  # Learning rate of the slow start (slow_start_learning_rate).
  config.train.warmup_learning_rate = 1e-4
  # How the slow start runs (slow_start_burnin_type): 'none' holds
  # warmup_learning_rate, 'linear' ramps from it to base_learning_rate.
  config.train.warmup_type = "none"
  # 'exponential' schedule: factor on the learning rate every decay_epochs
  # (slim's learning_rate_decay_factor default, 0.94).
  config.train.decay_rate = 0.94
  # 'exponential' schedule: epochs between decays (slim's
  # num_epochs_per_decay default, 2.0).
  config.train.decay_epochs = 2.0
  # Training records in one epoch, for the 'exponential' schedule (its
  # decay interval is decay_epochs * epoch_examples / batch_size steps,
  # rounded down, as slim's); required by that schedule.
  config.train.epoch_examples = 0
  # 'sgd' (SGD with momentum, the paper's) or 'adamw' (Keras' AdamW, for
  # training from scratch).
  config.train.optimizer = "sgd"
  # SGD momentum.
  config.train.momentum = 0.9
  # SGD: Nesterov momentum (the paper's ImageNet pretraining uses it).
  config.train.nesterov = False
  # AdamW's decay rate of the gradient's running mean (Keras' default).
  config.train.adam_beta1 = 0.9
  # AdamW's decay rate of the squared gradient's running mean.
  config.train.adam_beta2 = 0.999
  # AdamW's epsilon, added to the root of that mean.
  config.train.adam_epsilon = 1e-7
  # Weight decay of convolution kernels (not depthwise, bias or BN): for
  # 'sgd' the factor of the L2 loss (the paper's 4e-5), for 'adamw' the
  # decoupled decay per unit learning rate.
  config.train.weight_decay = 4e-5
  # Clip the gradient of the global batch to this norm; 0: no clipping.
  config.train.clip_global_norm = 0.0
  # Batch norm uses batch statistics and updates its moving ones (False: it
  # runs on the moving statistics, as at inference, for small batches; gamma
  # and beta still train, as in the original).
  config.train.fine_tune_batch_norm = True
  # Loss weight per class id, () for none (datasets.inspect prints them).
  config.train.class_weights = ()
  # Fraction of the hardest pixels of the batch kept in the loss (1.0: all
  # pixels).
  config.train.top_k_percent_pixels = 1.0
  # Weight of the Lovasz-softmax loss (a surrogate of 1 - IoU per class,
  # mean over the classes in the batch) added to the cross-entropy; 0: none.
  config.train.lovasz_weight = 0.0
  # The Lovasz loss sees every n-th row and column of the crop (one sort
  # per class over its pixels; its cost per stride:
  # docs/notes/camvid_recipe_decisions.md).
  config.train.lovasz_pixel_stride = 1
  # Steps over which the kept fraction ramps down from 1.0 to
  # top_k_percent_pixels (the original's hard_example_mining_step); 0: from
  # the first step.
  config.train.hard_example_mining_step = 0
  # Weights to start from: .keras file, original TF1 checkpoint prefix, or a
  # workdir of ours; '' starts from backbone_weights or scratch.
  config.train.init_checkpoint = ""
  # Load the last layers from init_checkpoint (False: they start fresh, e.g.
  # for a new class count; which layers: see the next field).
  config.train.initialize_last_layer = True
  # The last layers are the logits alone; False (the original's default):
  # logits, image pooling, ASPP, concat projection and decoder.
  config.train.last_layers_contain_logits_only = False
  # Factor on the gradients of the last layers (twice it on their biases;
  # every other bias gets 2x), the original's last_layer_gradient_multiplier.
  config.train.last_layer_gradient_multiplier = 1.0
  # Save a checkpoint every this many steps.
  config.train.checkpoint_every = 500
  # Checkpoints kept in workdir/checkpoints.
  config.train.keep_checkpoints = 5
  # Training steps per tf.function call (fewer host round trips).
  config.train.steps_per_loop = 10
  # Minutes of training for the whole run, resumes included: the learning
  # rate schedule is fitted to them (its horizon follows the measured step
  # time) and training stops, saving first, when they are spent; 0: no limit.
  config.train.max_minutes = 0.0
  # Seed of the weight initialization (same seed: same initial weights).
  config.train.seed = 0
  # tf.distribute strategy: one of STRATEGIES (multi_worker reads TF_CONFIG).
  config.train.strategy = "default"
  # TPU for strategy 'tpu': 'local' is the TPU attached to this VM (a
  # single-host TPU VM); a pod slice or a remote TPU takes its name (as
  # `gcloud compute tpus` lists it) or a grpc://host:port address.
  config.train.tpu = "local"

  # --- Evaluation. ---
  config.eval = ml_collections.ConfigDict()
  # Input scales whose softmax outputs are averaged, e.g. (0.5, 0.75, 1.0,
  # 1.25, 1.5, 1.75) for the paper's multi-scale figures.
  config.eval.scales = (1.0,)
  # Also average the left-right flipped input.
  config.eval.flip = False
  # (height, width) in pixels every evaluated or exported image is padded to
  # (bottom/right, mean pixel) before the network, as the original's
  # eval_crop_size; each of the form output_stride * k + 1. An image larger
  # than it is padded to the next output_stride * k + 1 instead, so (1, 1)
  # pads every image that way only. () takes the dataset table's value
  # (513x513 VOC and ADE20K, 1025x2049 Cityscapes; none for other datasets).
  config.eval.crop_size = ()
  # Eval images shown with predictions in TensorBoard.
  config.eval.num_summary_images = 3

  # --- The exported SavedModel (export.py; the eval section's scales,
  # flip and crop size are baked in too). ---
  config.export = ml_collections.ConfigDict()
  # The most pixels (batch x height x width) one request may hold; more is
  # an InvalidArgument error naming this limit, so a huge image cannot
  # exhaust the server's memory. Recorded in the SavedModel's metadata.
  config.export.max_request_pixels = MAX_REQUEST_PIXELS

  config.lock()
  return config


def get_config() -> ml_collections.ConfigDict:
  """The defaults, for ``--config`` flags whose file is this one."""
  return base_config()


def eval_crop_size(config) -> Optional[Tuple[int, int]]:
  """The (height, width) evaluation pads to: ``config.eval.crop_size``, or
  the dataset table's when that is (); None: stride-aligned padding only."""
  if tuple(config.eval.crop_size):
    return tuple(config.eval.crop_size)
  return registry.from_config(config).eval_crop_size


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
  """Checks values a locked, typed config tree can still get wrong.

  Raises:
    ValueError: naming the config key, the rule and the received value.
  """
  ModelArgs.from_experiment(config)  # ArgumentError names the key.
  segmentation = config.model.task == "segmentation"
  output_stride = config.model.output_stride
  crop = tuple(config.data.crop_size)
  if not segmentation:  # Global pooling takes any size.
    if len(crop) != 2 or not all(isinstance(c, int) and c >= 1 for c in crop):
      raise ValueError("config.data.crop_size must be (height, width) in "
                       f"pixels, got {crop!r}")
  elif (len(crop) != 2 or
        not all(isinstance(c, int) and c > 1 and (c - 1) % output_stride == 0
                for c in crop)):
    raise ValueError(
        "config.data.crop_size must be (height, width) with each of the form "
        f"output_stride * k + 1 (output_stride={output_stride}: e.g. "
        f"{output_stride * 32 + 1}), got {crop!r}")
  data = config.data
  if not 0 < data.min_scale <= data.max_scale:
    raise ValueError(
        "config.data.min_scale and max_scale must satisfy 0 < min <= max, "
        f"got {data.min_scale!r}, {data.max_scale!r}")
  for key in ("min_resize_value", "max_resize_value", "resize_factor"):
    if data[key] < 0:
      raise ValueError(f"config.data.{key} must be >= 0, got {data[key]!r}")
  if data.scale_step < 0:
    raise ValueError(f"config.data.scale_step must be >= 0, got {data.scale_step!r}")
  if data.eval_batch_size < 1:
    raise ValueError(
        f"config.data.eval_batch_size must be >= 1, got {data.eval_batch_size!r}")
  if not 0 < data.central_crop <= 1:
    raise ValueError("config.data.central_crop must be in (0, 1], got "
                     f"{data.central_crop!r}")
  if data.shuffle_buffer < 1:
    raise ValueError(
        f"config.data.shuffle_buffer must be >= 1, got {data.shuffle_buffer!r}")
  info = registry.from_config(config)  # Table agreement of the classes.
  paste = tuple(data.paste_classes)
  if not all(isinstance(c, int) and 0 <= c < info.num_classes for c in paste):
    raise ValueError("config.data.paste_classes must be class ids in [0, "
                     f"{info.num_classes}), got {paste!r}")
  if not 0 <= data.paste_probability <= 1:
    raise ValueError("config.data.paste_probability must be in [0, 1], got "
                     f"{data.paste_probability!r}")
  if config.train.batch_size < 1:
    raise ValueError(
        f"config.train.batch_size must be >= 1, got {config.train.batch_size!r}")
  train = config.train
  for key in ("steps", "checkpoint_every", "keep_checkpoints", "steps_per_loop",
              "lovasz_pixel_stride"):
    if train[key] < 1:
      raise ValueError(f"config.train.{key} must be >= 1, got {train[key]!r}")
  for key in ("last_layer_gradient_multiplier", "hard_example_mining_step",
              "lovasz_weight"):
    if train[key] < 0:
      raise ValueError(f"config.train.{key} must be >= 0, got {train[key]!r}")
  if train.base_learning_rate <= 0:
    raise ValueError("config.train.base_learning_rate must be > 0, got "
                     f"{train.base_learning_rate!r}")
  if not 0 < train.top_k_percent_pixels <= 1:
    raise ValueError("config.train.top_k_percent_pixels must be in (0, 1], "
                     f"got {train.top_k_percent_pixels!r}")
  if train.class_weights and len(train.class_weights) != config.dataset.num_classes:
    raise ValueError(
        f"config.train.class_weights has {len(train.class_weights)} entries "
        f"for config.dataset.num_classes={config.dataset.num_classes}")
  if train.schedule not in SCHEDULES:
    raise ValueError(f"config.train.schedule must be one of {SCHEDULES}, "
                     f"got {train.schedule!r}")
  if train.schedule == "exponential":
    if not 0 < train.decay_rate <= 1 or train.decay_epochs <= 0:
      raise ValueError(
          "config.train.decay_rate must be in (0, 1] and decay_epochs > 0, "
          f"got {train.decay_rate!r}, {train.decay_epochs!r}")
    if train.epoch_examples < 1:
      raise ValueError(
          "config.train.epoch_examples must be the number of training "
          "records (>= 1) for config.train.schedule='exponential' (it decays "
          f"by epochs), got {train.epoch_examples!r}")
  if train.optimizer not in OPTIMIZERS:
    raise ValueError(f"config.train.optimizer must be one of {OPTIMIZERS}, "
                     f"got {train.optimizer!r}")
  if train.clip_global_norm < 0:
    raise ValueError("config.train.clip_global_norm must be >= 0 (0: no "
                     f"clipping), got {train.clip_global_norm!r}")
  if train.max_minutes < 0:
    raise ValueError("config.train.max_minutes must be >= 0 (0: no limit), "
                     f"got {train.max_minutes!r}")
  if train.warmup_type not in ("none", "linear"):
    raise ValueError("config.train.warmup_type must be 'none' or 'linear', "
                     f"got {train.warmup_type!r}")
  if train.strategy not in STRATEGIES:
    raise ValueError(f"config.train.strategy must be one of {STRATEGIES}, "
                     f"got {train.strategy!r}")
  eval_crop = tuple(config.eval.crop_size)
  if segmentation and eval_crop and (
      len(eval_crop) != 2 or
      not all(isinstance(c, int) and c >= 1 and (c - 1) % output_stride == 0
              for c in eval_crop)):
    raise ValueError(
        "config.eval.crop_size must be () or (height, width) with each of the "
        f"form output_stride * k + 1 (output_stride={output_stride}: e.g. "
        f"{output_stride * 32 + 1}), got {eval_crop!r}")
  if train.strategy == "tpu" and not train.tpu:
    raise ValueError(
        "config.train.tpu must name the TPU for config.train.strategy='tpu': "
        "'local' on a TPU VM, the TPU's name for a pod slice or a remote "
        "TPU, or a grpc://host:port address; got ''")
  if config.export.max_request_pixels < 1:
    raise ValueError("config.export.max_request_pixels must be >= 1, got "
                     f"{config.export.max_request_pixels!r}")
  if not config.eval.scales or any(s <= 0 for s in config.eval.scales):
    raise ValueError(f"config.eval.scales must be positive, got "
                     f"{tuple(config.eval.scales)!r}")
