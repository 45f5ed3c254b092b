"""The tf.data pipeline, augmentation, the synthetic set, TFDS and the audit."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import audit
from deeplab.data import augment
from deeplab.data import builder
from deeplab.data import dataset_table
from deeplab.data import pipeline
from deeplab.data import records
from deeplab_configs import synthetic
from deeplab_datasets import make_synthetic
from tests.conftest import REPO


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic")
  subprocess.run([sys.executable, "-m", "deeplab.cli", "make-synthetic",
                  f"--output_dir={out}", "--train_size=24", "--val_size=6",
                  "--image_size=97", "--num_shards=3"],
                 cwd=REPO, check=True, capture_output=True)
  return out


def config_for(records_dir, **data):
  config = synthetic.get_config()
  config.data.train_pattern = str(records_dir / "train-*.tfrecord")
  config.data.eval_pattern = str(records_dir / "val-*.tfrecord")
  config.data.crop_size = (65, 65)
  config.train.batch_size = 4
  for key, value in data.items():
    config.data[key] = value
  return config


def test_synthetic_generator_is_deterministic_and_uses_every_class():
  image_a, mask_a = make_synthetic.generate(3, seed=0, size=97)
  image_b, mask_b = make_synthetic.generate(3, seed=0, size=97)
  np.testing.assert_array_equal(image_a, image_b)
  np.testing.assert_array_equal(mask_a, mask_b)
  assert not np.array_equal(make_synthetic.generate(4, 0, 97)[0], image_a)
  classes = set()
  for i in range(20):
    classes |= set(np.unique(make_synthetic.generate(i, 0, 97)[1]).tolist())
  assert classes == set(range(dataset_table.DATASETS["synthetic"].num_classes))


def test_train_batches_have_fixed_shapes_and_valid_values(synthetic_records):
  dataset = pipeline.train_dataset(config_for(synthetic_records))
  assert dataset.element_spec[0].shape == (4, 65, 65, 3)
  for images, labels in dataset.take(3):
    assert images.dtype == tf.float32 and labels.dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    values = set(np.unique(labels.numpy()).tolist())
    assert values <= {0, 1, 2, 3, 4, 255}


def test_deterministic_mode_repeats_exactly(synthetic_records):
  config = config_for(synthetic_records, deterministic=True, seed=7)
  first = [x.numpy() for x, _ in pipeline.train_dataset(config).take(3)]
  second = [x.numpy() for x, _ in pipeline.train_dataset(config).take(3)]
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  config.data.seed = 8
  third = [x.numpy() for x, _ in pipeline.train_dataset(config).take(1)]
  assert not np.array_equal(first[0], third[0])


def test_paste_moves_a_class_from_the_previous_crop_with_an_ignored_ring():
  images = tf.stack([tf.fill([6, 7, 3], float(i)) for i in range(3)])
  labels = tf.zeros([3, 6, 7], tf.int32)
  # Crop 0 holds a class-2 post in column 3 and a class-1 blob; crop 2 a
  # class-2 pixel at (5, 6), where the ring is cut by the border.
  labels = tf.tensor_scatter_nd_update(
      labels, [[0, r, 3] for r in range(1, 5)] + [[0, 0, 0], [2, 5, 6]],
      [2, 2, 2, 2, 1, 2])
  pasted_images, pasted_labels = augment.paste_classes(
      images, labels, (2,), 1.0, 255)
  labels, images = labels.numpy(), images.numpy()
  pasted_labels, pasted_images = pasted_labels.numpy(), pasted_images.numpy()
  # Crop 1 gets crop 0's post (not its class-1 blob), crop 0 gets crop 2's
  # pixel: labels and pixels, each with its one-pixel ring ignored.
  post = labels[0] == 2
  ring = (tf.nn.max_pool2d(post[None, ..., None].astype("float32"), 3, 1,
                           "SAME").numpy()[0, ..., 0] > 0) & ~post
  np.testing.assert_array_equal(pasted_labels[1][post], 2)
  np.testing.assert_array_equal(pasted_labels[1][ring], 255)
  np.testing.assert_array_equal(pasted_labels[1][~post & ~ring], 0)
  np.testing.assert_array_equal(pasted_images[1][post | ring], 0.0)
  np.testing.assert_array_equal(pasted_images[1][~post & ~ring], 1.0)
  assert pasted_labels[0][5, 6] == 2 and pasted_images[0][5, 6, 0] == 2.0
  assert (pasted_labels[0][4:, 5:] == 255).sum() == 3
  np.testing.assert_array_equal(pasted_labels[0][0, 0], 1)  # Kept.
  np.testing.assert_array_equal(pasted_labels[2], labels[2])  # Crop 1 has none.
  # Probability 0 and a batch of one change nothing.
  for batch, probability in ((slice(None), 0.0), (slice(0, 1), 1.0)):
    kept_images, kept_labels = augment.paste_classes(
        images[batch], labels[batch], (2,), probability, 255)
    np.testing.assert_array_equal(kept_labels, labels[batch])
    np.testing.assert_array_equal(kept_images, images[batch])


def test_paste_probability_is_per_crop_and_seeded():
  # Even crops are all class 1, odd crops all class 0: only odd crops can
  # receive pixels, each with the probability.
  images = tf.zeros([64, 4, 4, 3])
  labels = tf.reshape(tf.tile(tf.constant([1, 0]), [32]), [64, 1, 1]) * \
      tf.ones([64, 4, 4], tf.int32)
  seed = tf.constant([3, 4], tf.int64)
  _, first = augment.paste_classes(images, labels, (1,), 0.25, 255, seed)
  _, second = augment.paste_classes(images, labels, (1,), 0.25, 255, seed)
  np.testing.assert_array_equal(first, second)
  changed = (first.numpy() != labels.numpy()).any(axis=(1, 2))
  assert not changed[::2].any()
  assert 2 <= changed[1::2].sum() <= 16  # Binomial(32, 0.25): mean 8.


def test_the_pipeline_pastes_classes_reproducibly(synthetic_records):
  config = config_for(synthetic_records, deterministic=True, seed=5,
                      paste_classes=(1,), paste_probability=1.0)
  first = [y.numpy() for _, y in pipeline.train_dataset(config).take(2)]
  again = [y.numpy() for _, y in pipeline.train_dataset(config).take(2)]
  config.data.paste_classes = ()
  plain = [y.numpy() for _, y in pipeline.train_dataset(config).take(2)]
  for a, b, c in zip(first, again, plain):
    np.testing.assert_array_equal(a, b)
    # Each crop holds its neighbour's class-1 pixels, with ignored rings.
    np.testing.assert_array_equal(a[np.roll(c, 1, axis=0) == 1], 1)
    assert (a == 255).sum() > (c == 255).sum()
  # A run resumed at step 1 draws the pastes of the uninterrupted one.
  config.data.paste_classes = (1,)
  resumed = next(iter(pipeline.train_dataset(config, start_step=1)))[1].numpy()
  np.testing.assert_array_equal(resumed, first[1])


def test_workers_read_disjoint_shards(synthetic_records):
  config = config_for(synthetic_records, deterministic=True)
  names = []
  for worker in range(3):
    context = tf.distribute.InputContext(num_input_pipelines=3,
                                         input_pipeline_id=worker,
                                         num_replicas_in_sync=3)
    dataset = pipeline.eval_dataset(config, context,
                                    pattern=config.data.train_pattern)
    names.append({b["filename"].numpy()[0] for b in dataset})
  assert all(len(n) == 8 for n in names)
  assert not (names[0] & names[1] or names[1] & names[2] or names[0] & names[2])
  context = tf.distribute.InputContext(3, 0, 6)
  assert context.get_per_replica_batch_size(12) == 2


def test_eval_whole_images_and_padded_batches(synthetic_records):
  config = config_for(synthetic_records)
  batches = list(pipeline.eval_dataset(config))
  assert len(batches) == 6 and batches[0]["image"].shape == (1, 97, 97, 3)
  config.data.eval_batch_size = 4
  batches = list(pipeline.eval_dataset(config))
  assert [b["image"].shape[0] for b in batches] == [4, 2]


def test_missing_records_name_the_config_key(tmp_path):
  config = config_for(tmp_path)
  with pytest.raises(FileNotFoundError, match="config.data.train_pattern="):
    pipeline.train_dataset(config)


def test_out_of_range_labels_stop_the_pipeline_naming_the_record(tmp_path):
  rgb = np.zeros((9, 9, 3), np.uint8)
  mask = np.full((9, 9), 9, np.uint8)  # 9 is no synthetic class id.
  writer = records.ShardWriter(str(tmp_path), "train", 1)
  import io  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top
  encoded = []
  for array in (rgb, mask):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    encoded.append(buffer.getvalue())
  writer.write(0, records.make_example(encoded[0], "png", "bad_one", 9, 9,
                                       encoded[1]).SerializeToString())
  writer.commit()
  config = config_for(tmp_path)
  with pytest.raises(tf.errors.InvalidArgumentError, match="bad_one"):
    next(iter(pipeline.train_dataset(config)))


def test_random_scale_draws_from_the_original_grid():
  seen = {round(float(augment.random_scale_factor(0.5, 2.0, 0.25, [i, 0])), 4)
          for i in range(200)}
  assert seen == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
  continuous = [float(augment.random_scale_factor(0.5, 2.0, 0.0, [i, 1]))
                for i in range(50)]
  assert len(set(continuous)) == 50 and 0.5 <= min(continuous) and max(continuous) < 2.0


def test_padding_uses_mean_pixel_and_ignore_label_and_flip_keeps_alignment():
  image = tf.fill([5, 6, 3], 200.0)
  label = tf.fill([5, 6, 1], tf.constant(1, tf.uint8))
  padded_image, padded_label = augment.pad_to_size(image, label, 9, 7, 255)
  assert padded_image.shape == (9, 7, 3)
  assert float(padded_image[8, 6, 0]) == 127.5 and int(padded_label[8, 6, 0]) == 255
  image = tf.reshape(tf.range(12, dtype=tf.float32), [2, 6, 1]) * tf.ones([1, 1, 3])
  label = tf.cast(tf.reshape(tf.range(12), [2, 6, 1]), tf.uint8)
  for i in range(10):
    flipped_image, flipped_label = augment.random_flip(image, label, [i, 2])
    np.testing.assert_array_equal(flipped_image[..., 0], tf.cast(flipped_label[..., 0], tf.float32))


def test_tfds_source_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from deeplab_datasets import build_tfds  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  # oxford_iiit_pet's masks hold 1 (pet), 2 (background), 3 (border).
  masks = [rng.integers(1, 4, (12 + i, 10, 1)).astype(np.uint8) for i in range(3)]
  images = [rng.integers(0, 255, (12 + i, 10, 3)).astype(np.uint8) for i in range(3)]

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    return tf.data.Dataset.from_generator(
        lambda: ({"image": im, "segmentation_mask": m, "label": 0,
                  "species": 0, "file_name": "x"}
                 for im, m in zip(images, masks)),
        output_signature={
            "image": tf.TensorSpec([None, None, 3], tf.uint8),
            "segmentation_mask": tf.TensorSpec([None, None, 1], tf.uint8),
            "label": tf.TensorSpec([], tf.int64),
            "species": tf.TensorSpec([], tf.int64),
            "file_name": tf.TensorSpec([], tf.string)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    samples = build_tfds.samples("oxford_iiit_pet", "train", offset=-1)
    with pytest.raises(ValueError, match="after --label_offset=-2 do not fit"):
      build_tfds.samples("oxford_iiit_pet", "train", offset=-2)
  report = builder.build_split(samples, builder.LabelSpec(3, 255),
                               str(tmp_path), "train", 1, workers=1)
  assert report.written == 3 and not report.problems
  for example, image, mask in zip(records.iterate_examples(report.shards),
                                  images, masks):
    np.testing.assert_array_equal(example["image"], image)
    np.testing.assert_array_equal(example["label"], mask - 1)


def test_audit_finds_the_usual_mistakes(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  binary = np.zeros((10, 10), np.uint8)
  binary[:5] = 255
  (tmp_path / "png").mkdir()
  (tmp_path / "jpg").mkdir()
  Image.fromarray(binary).save(tmp_path / "png" / "a.png")
  Image.fromarray(binary).save(tmp_path / "jpg" / "b.jpg")
  text, warnings = audit.report(audit.audit_path(str(tmp_path / "png")),
                                num_classes=2, ignore_label=255)
  assert any("only 0 and 255" in w for w in warnings)
  assert any("classes never present: ['class_1']" in w for w in warnings)
  assert "config.loss.class_weights = (1.0000, 0.0000,)" in text
  _, warnings = audit.report(audit.audit_path(str(tmp_path / "jpg")),
                             num_classes=2, ignore_label=255)
  assert any("JPEG masks" in w for w in warnings)


def test_median_frequency_weights():
  result = audit.Audit()
  result.add(np.array([[0, 0, 0, 1]]), "a")  # class 0: 3/4, class 1: 1/4
  result.add(np.array([[0, 0, 2, 2]]), "b")  # class 0: 2/4, class 2: 2/4
  weights = audit.median_frequency_weights(result, [0, 1, 2])
  freq = {0: 5 / 8, 1: 1 / 4, 2: 2 / 4}
  median = 0.5
  assert weights == pytest.approx({c: median / f for c, f in freq.items()})
  text, _ = audit.report(result, num_classes=3, ignore_label=255)
  full, roots = [line.strip() for line in text.splitlines()
                 if line.strip().startswith("config.loss.class_weights")]
  assert full == "config.loss.class_weights = (0.8000, 2.0000, 1.0000,)"
  assert roots == "config.loss.class_weights = (0.8944, 1.4142, 1.0000,)"
  # A mask's histogram (as the builders count) adds up as its ids do.
  twin = audit.Audit()
  for ids in ([[0, 0, 0, 1]], [[0, 0, 2, 2]]):
    twin.add_histogram(np.bincount(np.ravel(ids), minlength=256))
  fields = ("masks", "pixels", "images_with", "pixels_in_images_with")
  assert [getattr(twin, f) for f in fields] == [getattr(result, f) for f in fields]


@pytest.mark.parametrize("pipelines", [1, 2, 4])
def test_resume_several_epochs_in_reads_the_same_batches(synthetic_records, pipelines):
  # 24 records in 3 shards of 8: the last of 2 pipelines reads shard 1; each
  # of 4 reads every shard and keeps one record in 4. Step 13 is epochs in.
  config = config_for(synthetic_records, deterministic=True, shuffle_buffer=5)
  context = tf.distribute.InputContext(pipelines, pipelines - 1, pipelines)
  paths = pipeline.list_files(config.data.train_pattern, "pattern")
  assert sum(pipeline.count_file_records(p) for p in paths) == 24
  per_epoch = pipeline.records_per_epoch(paths, context)
  assert per_epoch == {1: 24, 2: 8, 4: 6}[pipelines]
  batch = 4 // pipelines
  straight = [y.numpy() for _, y in pipeline.train_dataset(
      config, context, batch_size=batch).take(15)]
  resumed = [y.numpy() for _, y in pipeline.train_dataset(
      config, context, batch_size=batch, start_step=13).take(2)]
  for a, b in zip(straight[13:], resumed):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(straight[0], straight[per_epoch // batch])  # Epochs differ.
