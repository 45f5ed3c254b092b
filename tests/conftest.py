"""Shared test fixtures: paths to ../shared data, quiet TensorFlow."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> pathlib.Path:
  """Returns a path under ../shared/data, skipping the test if it is absent."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} is absent: ../shared/data is beside the repo in CI, "
                "not on a user's fresh clone")
  return path


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Synthetic train (160) and val (24) records, one shard each."""
  from tests import harness  # pylint: disable=g-import-not-at-top
  return harness.make_synthetic_records(tmp_path_factory.mktemp("synthetic"))
