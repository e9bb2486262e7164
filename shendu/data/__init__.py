"""Data: datasets, samplers, the DataLoader, transforms (``shendu.data.transforms``) and real datasets
(``shendu.data.datasets``)."""

from shendu.data import (
                                 datasets,  # noqa: F401,E402
                                 transforms,  # noqa: F401,E402
)
from shendu.data.dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split  # noqa: F401
from shendu.data.loader import DataLoader, default_collate, default_convert  # noqa: F401
from shendu.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler  # noqa: F401
